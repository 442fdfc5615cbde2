"""The training jobs over the catalog: `manage.py train` (embedding model: products, view cache, recipe; embedding)
and `manage.py train-classifier` (taxonomy classifier mixed into the embedding; classifier). The loops themselves
are engine.train's.

May import: engine/, indexer.catalog, indexer.datasets, indexer.settings. Not the store or vectors (they run on
bare GPU boxes without faiss).
"""
