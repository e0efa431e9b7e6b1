"""The one BSON codec of the pipeline: tz-aware UTC datetimes, standard UUIDs, and dates outside
Python's range (BC, year > 9999) as DatetimeMS instead of a failed read; the raw variant
hands documents over undecoded.
"""

from __future__ import annotations

from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument

# Dates outside Python's datetime range (BC, year > 9999) come back as DatetimeMS instead of
# failing the whole read.
CODEC = CodecOptions(tz_aware=True, uuid_representation=4,
                     datetime_conversion=DatetimeConversion.DATETIME_AUTO)


RAW_CODEC = CodecOptions(document_class=RawBSONDocument, tz_aware=True, uuid_representation=4,
                         datetime_conversion=DatetimeConversion.DATETIME_AUTO)
