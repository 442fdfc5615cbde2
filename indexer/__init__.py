"""Lookalike's data plane and the jobs over it, one subpackage per domain (docs/architecture.md):

catalog/ (import, images, splits) -> pipeline/ (bulk indexing) -> store/ (SQL, the source of truth) + vectors/
(FAISS generations or Milvus) -> search/ (SearchService, QueryEngine); beside them datasets/ (pair sets, SYNTHETIC
street photos), evaluation/, training/ and outfits/. Root modules: settings (config.toml -> dataclasses), embedders
(the configured Embedder), wiring (Settings -> library objects), extras (optional dependencies), cli_support (what
every command shares).

May import engine/; never web/. Each subpackage's cli.py holds its manage.py commands.
"""
