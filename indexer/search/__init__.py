"""Answering queries: the SearchService over the served vector-store generation (service) and the QueryEngine that
localises garments in a photo and merges the evidence of its regions (query), words / photo + words / thumbs up-down
turned into query vectors (composed), plus `manage.py search` (cli).

May import: engine/, indexer.catalog, indexer.curation (collapsing results), indexer.store, indexer.vectors,
indexer.settings.
"""
