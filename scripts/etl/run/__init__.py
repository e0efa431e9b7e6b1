"""The master run and its records: `etl run`, stage records and the audit, the HTML report,
status and compare. Imports the layers below stages.
"""
