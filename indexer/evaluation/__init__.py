"""Measuring quality and speed: street-to-shop and category retrieval (retrieval), failure galleries (failures),
plots, stored runs and the analyst views of them (runs), the index sweep (sweep), and `manage.py evaluate` /
`sweep` (cli).

May import: engine/, indexer.catalog, indexer.datasets, indexer.store, indexer.vectors, indexer.pipeline,
indexer.search, indexer.wiring, indexer.settings, indexer.training.detector (the detector's SYNTHETIC scenes).
"""
