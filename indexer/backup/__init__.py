"""Backups: a consistent snapshot of the SQL store plus the served index generation (snapshot.py), written so that a
partial backup is never taken for a good one, and its restore; the `backup` / `restore` commands (cli.py).

May import: engine/, indexer.settings, indexer.store, indexer.vectors.generations and indexer.pipeline.crash_safety.
"""
