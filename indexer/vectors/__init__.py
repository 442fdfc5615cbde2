"""Vector stores: where the SQL store's vectors are searched. The interface and its shared types (base), FAISS
index generations with crash-safe swaps (generations, faiss_index, faiss_store), Milvus (milvus_store, its searcher
with load/reconnect in milvus_search, the schema mapping in milvus_schema), the factory that picks one from
index.store, and synthetic vectors for index benchmarks.

May import: engine/, indexer.store, indexer.settings, indexer.extras.
"""
