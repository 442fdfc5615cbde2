"""Catalog curation for merchandisers: exact and near-duplicate items, colour variants of one product, the label
audit (taxonomy values the pictures disagree with), collapsing result lists by those groups, the stored curation
runs and label changes (records), and the `duplicates` / `audit labels` commands (cli).

May import: engine/, indexer.catalog, indexer.store, indexer.vectors, indexer.settings.
"""
