"""The analyst workbench blueprint: evaluation runs, comparisons and index sweeps (routes), its SVG charts and its
OpenAPI paths.

May import: indexer/, engine/, web's root modules.
"""
