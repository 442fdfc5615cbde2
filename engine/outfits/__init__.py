"""Complete-the-look models: the outfit compatibility model, its training loop and its metrics (AUC, FITB, MMR).

May import: engine.models, engine's root modules. Never indexer/ or web/.
"""
