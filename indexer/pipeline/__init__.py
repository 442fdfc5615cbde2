"""Bulk indexing: catalog rows -> image bytes -> embeddings -> SQL -> vector store. The plan of a run (plan), the
single-process pipeline (indexing), the Ray pipeline (ray_pipeline), the writer lock and crash points
(crash_safety), and the `index` / `remove` / `check` commands (cli).

May import: engine/, indexer.catalog, indexer.store, indexer.vectors, indexer.settings, indexer.embedders,
indexer.extras.
"""
