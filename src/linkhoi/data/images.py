"""Image loading: any readable file becomes an 8-bit RGB PIL image, upright per EXIF."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageOps, UnidentifiedImageError


class ImageError(OSError):
    """An image file could not be read; the message names the file."""

    def __init__(self, path: str | Path, reason: str) -> None:
        self.path = str(path)
        super().__init__(f"image {str(path)!r}: {reason}")


class _NonFinitePixels(ValueError):
    """A float image with NaN or infinite pixels: no brightness scale fits it."""


def _to_rgb(image: Image.Image) -> Image.Image:
    mode = image.mode
    if mode == "RGB":
        return image
    if mode in ("I;16", "I;16B", "I;16L", "I;16N", "I", "F"):
        # PIL's convert("RGB") clips 16/32-bit values at 255; rescale the real range instead.
        data = np.asarray(image, dtype=np.float64)
        bad = int(data.size - np.count_nonzero(np.isfinite(data)))
        if bad:  # NaN would turn the whole image black through the min/max scaling
            raise _NonFinitePixels(
                f"float image with {bad} non-finite (NaN or infinite) pixel(s) of {data.size}; "
                "replace them with finite values and save it again"
            )
        if mode.startswith("I;16"):
            data = data / 65535.0
        else:
            lo, hi = float(data.min(initial=0.0)), float(data.max(initial=0.0))
            if mode == "F" and lo >= 0.0 and hi <= 1.0:
                lo, hi = 0.0, 1.0
            elif lo >= 0.0 and hi <= 255.0:
                lo, hi = 0.0, 255.0
            elif lo >= 0.0 and hi <= 65535.0:
                lo, hi = 0.0, 65535.0
            data = (data - lo) / max(hi - lo, 1e-12)
        gray = np.clip(np.rint(data * 255.0), 0, 255).astype(np.uint8)
        return Image.fromarray(np.stack([gray] * 3, axis=-1), mode="RGB")
    if mode in ("RGBA", "LA", "PA") or (mode == "P" and "transparency" in image.info):
        # Composite transparent pixels on white rather than dropping alpha (black artefacts).
        rgba = image.convert("RGBA")
        background = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(background, rgba).convert("RGB")
    return image.convert("RGB")  # L, 1, P, CMYK, YCbCr, LAB, HSV


def load_image(path: str | Path) -> Image.Image:
    """Open an image as 8-bit RGB with its EXIF orientation applied.

    Grayscale, palette, alpha, CMYK and 16/32-bit integer images are converted properly.
    Raises ImageError (naming the file) for missing, unreadable or non-image files.
    """
    path = Path(path)
    try:
        with Image.open(path) as image:
            image.load()
            image = ImageOps.exif_transpose(image) or image
            return _to_rgb(image).copy()
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except UnidentifiedImageError:
        raise ImageError(path, "not an image file PIL can identify") from None
    except Image.DecompressionBombError as err:  # not an OSError
        raise ImageError(path, f"too large to open safely ({err})") from None
    except _NonFinitePixels as err:
        raise ImageError(path, str(err)) from None
    except (OSError, ValueError, SyntaxError) as err:
        raise ImageError(path, f"unreadable or truncated image ({err})") from None


def image_size(path: str | Path) -> tuple[int, int]:
    """(width, height) after EXIF orientation, read from the header only (no decoding)."""
    path = Path(path)
    try:
        with Image.open(path) as image:
            width, height = image.size
            orientation = image.getexif().get(0x0112, 1)
    except FileNotFoundError:
        raise ImageError(path, "file not found") from None
    except (
        UnidentifiedImageError,
        Image.DecompressionBombError,
        OSError,
        ValueError,
        SyntaxError,
    ) as err:
        raise ImageError(path, f"not a readable image ({err})") from None
    # Orientations 5-8 rotate by 90 degrees and swap the sides.
    return (height, width) if orientation in (5, 6, 7, 8) else (width, height)
