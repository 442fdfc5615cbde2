"""Evaluation and training data made from a catalog: query/gallery pair sets and their adapters (DeepFashion,
Street2Shop, CSV), the SYNTHETIC street-photo generator, and `manage.py make-pairs` / `make-splits` (cli).

May import: engine/, indexer.catalog, indexer.settings.
"""
