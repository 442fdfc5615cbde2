"""Catalog import: reading catalog CSVs and image folders into rows (with row-numbered problems), decoding and
cropping images safely, the seeded train/val/test split of products, and downloading the public dataset into a
catalog CSV (fetch.py, `manage.py fetch-data`).

May import: engine/, indexer.store.tables (taxonomy columns), indexer.settings.
"""
