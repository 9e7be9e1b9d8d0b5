"""The LINK model: frozen CLIP backbone, Geometrical Encoder, Linking Decoder, text classifier.

``create_model(config, label_space, clip_weights=None)`` builds it; ``to_triplets`` turns one
image's output into triplet-format dicts; ``checkpoint.load_model`` reads a saved model.
"""

from linkhoi.model.config import ConfigError, LinkConfig
from linkhoi.model.link import LinkModel, create_model, to_triplets, valid_class_table

__all__ = [
    "ConfigError",
    "LinkConfig",
    "LinkModel",
    "create_model",
    "to_triplets",
    "valid_class_table",
]
