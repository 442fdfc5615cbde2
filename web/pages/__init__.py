"""The HTML pages blueprint: search page, item pages (routes) and picture serving from known roots (media).

May import: indexer/, engine/, web.api (serializers, params), web's root modules.
"""
