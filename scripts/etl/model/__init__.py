"""Pure logic, no I/O: the schema diff, the mapping, rules and expressions, canonical schemas and
validators, index specifications, checksums, the update plan. Imports only core's errors and
hashes.
"""
