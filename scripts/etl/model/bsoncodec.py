"""etl.model.bsoncodec"""

from __future__ import annotations

from bson.codec_options import CodecOptions, DatetimeConversion
from bson.raw_bson import RawBSONDocument

# Dates outside Python's datetime range (BC, year > 9999) come back as DatetimeMS instead of
# failing the whole read.
CODEC = CodecOptions(tz_aware=True, uuid_representation=4,
                     datetime_conversion=DatetimeConversion.DATETIME_AUTO)


RAW_CODEC = CodecOptions(document_class=RawBSONDocument, tz_aware=True, uuid_representation=4,
                         datetime_conversion=DatetimeConversion.DATETIME_AUTO)
