"""Plumbing every layer may use: settings, errors and exit codes, paths, file writes, the run
lock, progress, redaction, names and hashes. Imports nothing else of the package.
"""
