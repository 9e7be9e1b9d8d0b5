"""linkhoi: LINK human-object interaction detection with frozen CLIP features."""

from linkhoi import labels

__version__ = "0.1.0"
__all__ = ["labels", "__version__"]
