"""The complete-the-look blueprint (routes) and its OpenAPI paths (openapi).

May import: indexer/, engine/, web.api (serializers, params), web's root modules.
"""
