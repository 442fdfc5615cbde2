"""Training the embedding model on arrays: losses (triplet, taxonomy), the P x K sampler and the Trainer loop.
Data loading, view caches and the `manage.py train` recipe live in indexer/training/.

May import: engine.models and engine's root modules. Never indexer/ or web/.
"""
