"""Answering queries: the SearchService over the served vector-store generation (service) and the QueryEngine that
localises garments in a photo and merges the evidence of its regions (query), words / photo + words / thumbs up-down
turned into query vectors (composed), catalog labels named in words turned into an article-type boost and a colour
bonus (label_terms), plus `manage.py search` (cli).

May import: engine/, indexer.catalog, indexer.curation (collapsing results), indexer.outfits.colours (the pictures'
cached colour descriptors, for the colour head), indexer.store, indexer.vectors, indexer.settings.
"""
