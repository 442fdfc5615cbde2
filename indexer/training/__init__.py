"""The training jobs over the catalog: `manage.py train` (embedding model: products, view cache, recipe; embedding)
and `manage.py train-classifier` (taxonomy classifier mixed into the embedding; classifier), `manage.py train-text`
(the text tower for search by words; text), `manage.py train-colour-head` (base colour read from served vectors, for
word queries that name a colour; colour_head), `manage.py train-detector` (the garment detector on SYNTHETIC scenes;
detector). The loops themselves are engine.train's.

May import: engine/, indexer.catalog, indexer.datasets, indexer.settings, indexer.embedders, indexer.outfits.slots
(the slot rules that label the detector's scenes). Not the vectors (they run on bare GPU boxes without faiss); text and
colour_head read the served vectors once from indexer.store (SQLAlchemy only); colour_head also the outfit model's
cached colour descriptors (indexer.outfits.colours).
"""
