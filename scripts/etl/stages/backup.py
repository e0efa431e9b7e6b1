"""`etl backup`: versioned backups of MongoDB collections, taken before every load.

A version is `backups/<db>/<YYYY-MM-DD-NNN>/` (UTC date, NNN counting up within the day) in
the mongodump layout: `<coll>.bson`, `<coll>.metadata.json` (options as the server reports
them, validator included, and every index), plus `manifest.json` (version, database, time,
collections with counts and sha256 of every file, source dump, schema hash, size). A version
is built in a hidden folder and renamed into place when complete, so a listed version is
always whole. After each backup only the newest MONGO_BACKUP_RETENTION versions are kept.
"""

from __future__ import annotations

import logging

log = logging.getLogger("etl.backup")


