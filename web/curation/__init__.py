"""Merchandiser pages and APIs of curation: duplicate and variant groups, label suspects (routes, behind the
analyst access rule), and "why did this match" explanations for any result (explain, open like search), with their
OpenAPI paths (openapi).

May import: indexer/, engine/, web.errors, web.runtime, web.api, web.analytics (its access check).
"""
