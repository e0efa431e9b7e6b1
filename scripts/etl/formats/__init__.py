"""One reader and writer per file the stages exchange: snapshots, decisions, the mapping, rules,
canonical schemas, the mongodump layout and its manifest, backups, migration scripts, dump
pointers, the generated marker. Imports core and model.
"""
