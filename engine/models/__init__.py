"""The embedding model: backbones (EfficientNet-Lite, torchvision/open_clip adapters), preprocessing, projection
and taxonomy heads, the Embedder that turns images into unit vectors, backbone splitting for fine-tuning, and
checkpoints with their manifests.

May import: engine's root modules (errors, files, metrics). Never indexer/ or web/.
"""
