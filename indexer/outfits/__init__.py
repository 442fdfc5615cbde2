"""Complete the look: slot rules, the outfit view of the catalog, item colours, the outfit service that answers
"what goes with this", PROXY and Polyvore outfit datasets, training and evaluation of the compatibility model,
the wiring from Settings, and the outfit commands (cli).

May import: engine/, indexer.catalog, indexer.curation (audit flags on slot labels), indexer.store, indexer.search,
indexer.settings.
"""
