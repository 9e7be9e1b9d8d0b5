"""draw_triplets: boxes, pair lines and stacked labels on a PNG (headless)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont

from linkhoi.infer.draw import (
    MIN_SIDE,
    draw_triplets,
    fit_font,
    label_text,
    pair_marks,
    palette,
    place_label,
)


def _t(h, o, verb, obj, score):
    return {"human_box": h, "object_box": o, "verb": verb, "object": obj, "score": score}


def test_place_label_stacks_without_overlap() -> None:
    placed: list = []
    for _ in range(4):  # four labels for the same box
        placed.append(place_label((50, 10), [20, 30, 80, 90], placed, (200, 200)))
    assert placed[0] == (20, 20, 70, 30)  # just above the box
    for i, a in enumerate(placed):
        for b in placed[i + 1 :]:
            assert a[3] <= b[1] or b[3] <= a[1]  # stacked vertically, no overlap
    # A box at the top edge: the label goes just below it; at the right edge it is shifted left.
    assert place_label((50, 10), [190, 0, 200, 20], [], (200, 200)) == (150, 21, 200, 31)


def _inside(rect, size) -> bool:
    return rect[0] >= 0 and rect[1] >= 0 and rect[2] <= size[0] and rect[3] <= size[1]


def test_labels_do_not_hide_small_objects() -> None:
    person = [20, 60, 180, 190]
    small = [30, 42, 40, 52]  # a cup right above the person's top-left corner
    rect = place_label((60, 12), person, [], (200, 200), avoid=[person, small])
    assert rect[2] <= small[0] or rect[0] >= small[2] or rect[3] <= small[1] or rect[1] >= small[3]
    assert _inside(rect, (200, 200))
    # A label on a small object sits beside it, never on it, even when stacked.
    cup, placed = [100, 100, 108, 108], []
    for _ in range(5):
        placed.append(place_label((40, 10), cup, placed, (200, 200), avoid=[cup]))
    for r in placed:
        assert r[3] <= cup[1] or r[1] >= cup[3]


def test_labels_stay_inside_the_image() -> None:
    size, placed = (200, 200), []
    for _ in range(30):  # far more labels than rows near a box at the bottom right corner
        placed.append(place_label((70, 12), [170, 170, 199, 199], placed, size))
    assert all(_inside(r, size) for r in placed)
    assert place_label((70, 12), [190, 5, 199, 15], [], size)[2] <= 200  # right edge
    # A label wider than a narrow image gets a smaller font that fits.
    draw = ImageDraw.Draw(Image.new("RGB", (60, 512)))
    font = ImageFont.load_default(size=16)
    text = "carry surfboard 0.97"
    assert draw.textlength(text, font=font) > 56
    small = fit_font(draw, text, font, 56)
    left, _, right, _ = draw.textbbox((0, 0), text, font=small)
    assert right - left <= 56 and small.size < 16


def test_pair_line_marks_the_human_end() -> None:
    human, obj = [0, 0, 20, 40], [100, 10, 120, 30]
    dot, arrow = pair_marks(human, obj, width=2)
    assert ((dot[0] + dot[2]) / 2, (dot[1] + dot[3]) / 2) == (10, 20)  # on the human's centre
    assert arrow[0] == (110, 20)  # the arrowhead's tip is on the object's centre
    assert all(x < 110 for x, _ in arrow[1:])  # its base lies towards the human


def test_label_text_and_palette() -> None:
    assert label_text(_t([0, 0, 1, 1], [0, 0, 1, 1], "ride", "horse", 0.834)) == "ride horse 0.83"
    assert label_text({"hoi_id": 7, "score": 0.5}) == "hoi 7 0.50"
    assert label_text({"verb": "stand", "object": None, "score": 0.25}) == "stand 0.25"
    colours = palette(12)
    assert len(set(colours)) == 12


def test_draw_png(tmp_path: Path) -> None:
    rng = np.random.default_rng(0)
    image = Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8))
    h, o1, o2 = [10, 10, 60, 110], [80, 20, 150, 70], [90, 80, 140, 115]
    trips = [
        _t(h, o1, "ride", "horse", 0.9),
        _t(h, o1, "feed", "horse", 0.8),  # same pair: same colour, stacked label
        _t(h, o2, "hold", "cup", 0.7),
        _t(h, o2, "no_interaction", "cup", 0.95),  # left out by default
    ]
    out = tmp_path / "sub" / "drawn.png"
    drawn = draw_triplets(image, trips, out, max_triplets=20)
    assert out.is_file() and not list(out.parent.glob(".*"))  # atomic: no temporary left
    saved = Image.open(out)
    scale = MIN_SIDE / 160
    assert saved.size == drawn.size == (MIN_SIDE, round(120 * scale))
    pixels = np.asarray(saved)
    first, second = palette(2)
    # The human box's left border (x = 10 * scale) is drawn in the first pair's colour
    # at mid-height (the second pair's rectangle is drawn over it on top of that).
    column = pixels[int(60 * scale) - 20 : int(60 * scale) + 20, round(10 * scale)]
    assert any(tuple(p) in (first, second) for p in column)
    # The object box of the second pair is in the second colour.
    assert tuple(pixels[round(100 * scale), round(90 * scale)]) == second
    # Empty triplets: the (enlarged) image unchanged apart from resizing.
    plain = draw_triplets(image, [], None)
    assert plain.size == saved.size
    assert np.array_equal(np.asarray(plain), np.asarray(image.resize(plain.size, Image.BILINEAR)))
