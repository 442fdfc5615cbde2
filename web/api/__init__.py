"""The JSON API blueprint: search by photo, items, similar items, filter values (routes), request parsing (params),
response shapes (serializers) and the OpenAPI document (openapi).

May import: indexer/, engine/, web's root modules (errors, runtime) and the other blueprints' OpenAPI pieces.
"""
