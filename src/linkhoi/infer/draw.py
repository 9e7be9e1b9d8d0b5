"""Draw HOI triplets on an image: boxes, a line per pair, stacked "verb object score" labels.

Headless (PIL ImageDraw). Each (human, object) pair gets its own colour. Its line starts at
a ringed dot on the human box's centre and ends in an arrowhead on the object's, so the human
end is clear when boxes overlap. Its labels sit next to the object box (the human box for
agent-only classes): above it, else below it, else further away, at the nearest place that
overlaps no label already placed and hides no drawn box, whole inside the image. Small images
are enlarged first so the text keeps a readable size.
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


def _hidden_fraction(rect: tuple[float, ...], box: list[float] | tuple[float, ...]) -> float:
    """The share of ``box``'s area that ``rect`` covers (1.0 for a box of no area it touches)."""
    w = min(rect[2], box[2]) - max(rect[0], box[0])
    h = min(rect[3], box[3]) - max(rect[1], box[1])
    if w <= 0 or h <= 0:
        return 0.0
    area = (box[2] - box[0]) * (box[3] - box[1])
    return 1.0 if area <= 0 else min(1.0, w * h / area)


# A label may cover up to this share of a drawn box (a corner of a large person box) before
# a place further away is preferred; small objects are hidden long before it.
MAX_HIDDEN = 0.1


def place_label(
    size: tuple[float, float],
    anchor: list[float],
    placed: list[tuple[float, float, float, float]],
    image_size: tuple[int, int],
    avoid: list[list[float]] | tuple = (),
) -> tuple[float, float, float, float]:
    """Rectangle (x1, y1, x2, y2) for a label of `size` (w, h) next to `anchor`'s box.

    Candidate rows, nearest first: just above the box, just below it, then one label height
    further up, further down, and so on; each left-aligned with the box and shifted left to
    end inside the image. The first row that lies inside the image, overlaps no `placed`
    label and covers at most ``MAX_HIDDEN`` of every box in `avoid` (the drawn boxes) wins;
    failing that, the row that hides the least. A label taller than the image sits at the top.
    """
    (tw, th), (iw, ih) = size, image_size
    x = min(max(anchor[0], 0), max(iw - tw, 0))
    rows: list[float] = []
    for k in range(int(ih // max(th, 1)) + 2):
        for y in (anchor[1] - th - k * (th + 1), anchor[3] + 1 + k * (th + 1)):
            if y >= 0 and y + th <= ih:
                rows.append(y)
    if not rows:
        return (x, 0, x + tw, th)
    best, best_cost = None, None
    for order, y in enumerate(rows):
        rect = (x, y, x + tw, y + th)
        on_label = any(_overlaps(rect, r) for r in placed)
        hidden = max((_hidden_fraction(rect, b) for b in avoid), default=0.0)
        if not on_label and hidden <= MAX_HIDDEN:
            return rect
        cost = (on_label, hidden, order)
        if best_cost is None or cost < best_cost:
            best, best_cost = rect, cost
    return best


def pair_marks(
    human: list[float], obj: list[float], width: int
) -> tuple[list[float], list[tuple[float, float]]]:
    """Where a pair's line ends are marked: the bounding box (x1, y1, x2, y2) of the dot on the
    human box's centre, and the three corners of the arrowhead whose tip is the object box's
    centre. Boxes in drawing pixels; ``width`` is the line width."""
    hc = ((human[0] + human[2]) / 2, (human[1] + human[3]) / 2)
    oc = ((obj[0] + obj[2]) / 2, (obj[1] + obj[3]) / 2)
    r = 3 * width
    dot = [hc[0] - r, hc[1] - r, hc[0] + r, hc[1] + r]
    dx, dy = oc[0] - hc[0], oc[1] - hc[1]
    norm = (dx * dx + dy * dy) ** 0.5
    if norm < 1e-6:  # same centre: no direction to point in
        return dot, []
    ux, uy = dx / norm, dy / norm
    length = min(4 * width, norm / 2)
    base = (oc[0] - ux * length, oc[1] - uy * length)
    half = length / 2
    arrow = [
        oc,
        (base[0] - uy * half, base[1] + ux * half),
        (base[0] + uy * half, base[1] - ux * half),
    ]
    return dot, arrow


def fit_font(draw: ImageDraw.ImageDraw, text: str, font: Any, max_width: float) -> Any:
    """``font``, or a smaller size of it (down to 6 px) when ``text`` is wider than
    ``max_width`` pixels: in a narrow image a label must not run off the right edge."""
    while font.size > 6:
        left, _, right, _ = draw.textbbox((0, 0), text, font=font)
        if right - left <= max_width:
            break
        font = ImageFont.load_default(size=font.size - 1)
    return font


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
    boxes: list[list[float]] = []
    for t, key in zip(shown, pair_key, strict=True):
        c, h = colours[key], sc(t["human_box"])
        draw.rectangle(h, outline=c, width=width)
        boxes.append(h)
        if t.get("object_box"):
            o = sc(t["object_box"])
            draw.rectangle(o, outline=c, width=width)
            boxes.append(o)
            dot, arrow = pair_marks(h, o, width)
            draw.line([((h[0] + h[2]) / 2, (h[1] + h[3]) / 2), arrow[0] if arrow else dot[:2]],
                      fill=c, width=width)  # fmt: skip
            if arrow:
                draw.polygon(arrow, fill=c)
            draw.ellipse(dot, fill=c, outline=_text_colour(c), width=max(1, width // 2))
    placed: list[tuple[float, float, float, float]] = []
    pad = 2
    for t, key in zip(shown, pair_key, strict=True):
        c = colours[key]
        anchor = sc(t["object_box"] if t.get("object_box") else t["human_box"])
        text = label_text(t)
        text_font = fit_font(draw, text, font, img.width - 2 * pad)
        left, top, right, bottom = draw.textbbox((0, 0), text, font=text_font)
        tw, th = right - left + 2 * pad, bottom - top + 2 * pad
        rect = place_label((tw, th), anchor, placed, img.size, avoid=boxes)
        placed.append(rect)
        x, y = rect[0], rect[1]
        draw.rectangle(rect, fill=c)
        draw.text((x + pad - left, y + pad - top), text, fill=_text_colour(c), font=text_font)
    if out_path is not None:
        _save_atomic(img, Path(out_path))
    return img


def _save_atomic(img: Image.Image, path: Path) -> None:
    with atomic_path(path, suffix=path.suffix) as tmp:  # PIL picks the format from it
        img.save(tmp)
