"""The SQL store, the source of truth: engine/session setup and migrations (db), the ORM tables (tables) and the
queries the pipeline, search and analytics use (catalog_store.Store). Alembic's migrations/ import the tables.

May import: engine/ and indexer.settings only.
"""
