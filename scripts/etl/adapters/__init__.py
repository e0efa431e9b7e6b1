"""The world outside: MongoDB (client, collections, staging and swap, dumps, migrations),
PostgreSQL's and S3's clients, the local services. Imports core, model and formats.
"""
