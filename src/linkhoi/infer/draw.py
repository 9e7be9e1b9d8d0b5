"""Draw HOI triplets on an image: boxes, a line per pair, stacked "verb object score" labels.

Headless (PIL ImageDraw). Each (human, object) pair gets its own colour; its labels sit
above the object box (the human box for agent-only classes) and are pushed down until they
overlap no label already placed, so busy images stay legible. Small images are enlarged
first so the text keeps a readable size.
"""

from __future__ import annotations

import colorsys
from pathlib import Path
from typing import Any

from PIL import Image, ImageDraw, ImageFont

from linkhoi.io import atomic_path

MIN_SIDE = 512  # images with a shorter longest side are enlarged to it before drawing


def palette(n: int) -> list[tuple[int, int, int]]:
    """`n` distinct saturated colours (golden-ratio hue steps)."""
    out = []
    for i in range(n):
        r, g, b = colorsys.hsv_to_rgb((0.07 + i * 0.618034) % 1.0, 0.85, 0.95)
        out.append((int(r * 255), int(g * 255), int(b * 255)))
    return out


def label_text(t: dict[str, Any]) -> str:
    """ "ride horse 0.83"; ids where names are absent (SWiG-HOI ambiguous names)."""
    verb = t.get("verb") or f"hoi {t.get('hoi_id', t.get('verb_id', '?'))}"
    obj = t.get("object")
    return f"{verb} {obj} {t['score']:.2f}" if obj else f"{verb} {t['score']:.2f}"


def _overlaps(a: tuple[float, ...], b: tuple[float, ...]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _text_colour(fill: tuple[int, int, int]) -> tuple[int, int, int]:
    luma = 0.299 * fill[0] + 0.587 * fill[1] + 0.114 * fill[2]
    return (0, 0, 0) if luma > 150 else (255, 255, 255)


def place_label(
    size: tuple[float, float],
    anchor: list[float],
    placed: list[tuple[float, float, float, float]],
    image_size: tuple[int, int],
) -> tuple[float, float, float, float]:
    """Rectangle (x1, y1, x2, y2) for a label of `size` (w, h): just above `anchor`'s box
    (inside it at the top border), moved down past every `placed` label it would overlap."""
    (tw, th), (iw, ih) = size, image_size
    x = min(max(anchor[0], 0), max(iw - tw, 0))
    y = anchor[1] - th if anchor[1] - th >= 0 else max(anchor[1], 0)
    rect = (x, y, x + tw, y + th)
    while any(_overlaps(rect, r) for r in placed) and y + th < ih:
        y += th + 1  # stack below the label it would cover
        rect = (x, y, x + tw, y + th)
    return rect


def draw_triplets(
    image: Image.Image | str | Path,
    triplets: list[dict[str, Any]],
    out_path: str | Path | None = None,
    max_triplets: int = 20,
    skip_verbs: tuple[str, ...] = ("no_interaction",),
) -> Image.Image:
    """Draw the best `max_triplets` triplets (boxes in `image`'s pixels), leaving out
    `skip_verbs`; save to `out_path` (atomically, format by suffix) when given. Returns the
    drawn (possibly enlarged) image."""
    if not isinstance(image, Image.Image):
        from linkhoi.data import load_image

        image = load_image(image)
    img = image.convert("RGB")
    scale = max(1.0, MIN_SIDE / max(img.size))
    if scale > 1:
        img = img.resize((round(img.width * scale), round(img.height * scale)), Image.BILINEAR)
    draw = ImageDraw.Draw(img)
    font = ImageFont.load_default(size=max(12, round(max(img.size) / 45)))
    width = max(2, round(max(img.size) / 300))
    shown = [t for t in triplets if t.get("verb") not in skip_verbs]
    shown = sorted(shown, key=lambda t: -t["score"])[:max_triplets]

    def sc(box: list[float]) -> list[float]:
        return [v * scale for v in box]

    pair_key = [(tuple(t["human_box"]), tuple(t.get("object_box") or ())) for t in shown]
    colours = dict(zip(dict.fromkeys(pair_key), palette(len(set(pair_key))), strict=True))
    # Boxes and lines first, labels on top of everything.
    for t, key in zip(shown, pair_key, strict=True):
        c, h = colours[key], sc(t["human_box"])
        draw.rectangle(h, outline=c, width=width)
        if t.get("object_box"):
            o = sc(t["object_box"])
            draw.rectangle(o, outline=c, width=width)
            hc, oc = ((h[0] + h[2]) / 2, (h[1] + h[3]) / 2), ((o[0] + o[2]) / 2, (o[1] + o[3]) / 2)
            draw.line([hc, oc], fill=c, width=width)
            draw.ellipse(
                [hc[0] - width * 2, hc[1] - width * 2, hc[0] + width * 2, hc[1] + width * 2], fill=c
            )
    placed: list[tuple[float, float, float, float]] = []
    pad = 2
    for t, key in zip(shown, pair_key, strict=True):
        c = colours[key]
        anchor = sc(t["object_box"] if t.get("object_box") else t["human_box"])
        text = label_text(t)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        rect = place_label((tw, th), anchor, placed, img.size)
        placed.append(rect)
        x, y = rect[0], rect[1]
        draw.rectangle(rect, fill=c)
        draw.text((x + pad - left, y + pad - top), text, fill=_text_colour(c), font=font)
    if out_path is not None:
        _save_atomic(img, Path(out_path))
    return img


def _save_atomic(img: Image.Image, path: Path) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp:  # PIL picks the format from it
        img.save(tmp)
