"""Geometry and drawing of the synthetic HOI world: stick figures, objects, backgrounds.

Everything is in continuous pixel coordinates of the image (x right, y down). A person is a
set of keypoints computed from a few pose parameters; an object ("thing") is a nominal box
plus special points (seat, grip). The interaction rules in ``synthetic.py`` read only these
keypoints and the tight boxes measured from the drawn pixels, so the labels are a function
of what is drawn.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import numpy as np
from PIL import Image, ImageDraw

Point = tuple[float, float]

SKIN = [(250, 220, 180), (220, 170, 120), (160, 110, 70), (100, 70, 40)]
PANTS = [(40, 40, 60), (60, 50, 40), (30, 60, 90), (70, 70, 70)]
THING_COLOURS: dict[str, list[tuple[int, int, int]]] = {
    "ball": [(225, 40, 30), (245, 120, 20), (205, 30, 95)],
    "cup": [(240, 240, 248), (150, 205, 245)],
    "horse": [(125, 72, 30), (92, 56, 30), (165, 112, 62)],
    "bicycle": [(20, 115, 60), (35, 35, 35), (40, 60, 165)],
    "umbrella": [(150, 40, 175), (225, 60, 150)],
    "book": [(232, 202, 30), (60, 172, 60), (40, 92, 205)],
    "kite": [(30, 200, 212), (250, 222, 40)],
    "chair": [(142, 92, 40), (112, 112, 112)],
}
# Nominal sizes as fractions of the reference person height P: (width, height).
THING_SIZE = {
    "ball": (0.15, 0.15),
    "cup": (0.12, 0.14),
    "horse": (1.25, 0.95),
    "bicycle": (0.95, 0.6),
    "umbrella": (0.6, 0.7),
    "book": (0.2, 0.15),
    "kite": (0.25, 0.32),
    "chair": (0.42, 0.62),
}
# Special points in the unmirrored nominal box, as fractions of (w, h).
SEAT = {"horse": (0.45, 0.3), "bicycle": (0.38, 0.04), "chair": (0.6, 0.47)}


@dataclass
class Person:
    """A stick figure. ``legs``: stand | kick | sit | ride; ``arms``: (front, back) modes,
    front in {down, hold, carry, point}, back in {down, hold_back, raise, carry}; a ``point``
    arm is straight along ``point_dir``."""

    x: float
    ground: float
    size: float  # P, standing height in pixels
    facing: int  # +1 right, -1 left
    legs: str = "stand"
    arms: tuple[str, str] = ("down", "down")
    hip: Point | None = None  # set for sit / ride (the seat point)
    gaze: float = 0.0  # radians, image frame (0 = right, pi/2 = down)
    point_dir: float = 0.0  # radians, direction of a pointing arm
    skin: tuple[int, int, int] = SKIN[0]
    shirt: tuple[int, int, int] = (200, 60, 60)
    pants: tuple[int, int, int] = PANTS[0]
    kp: dict[str, np.ndarray] = field(default_factory=dict)

    @property
    def lw(self) -> int:
        return max(2, round(0.045 * self.size))

    @property
    def tol(self) -> float:
        """Contact tolerance of the interaction rules, in pixels."""
        return 0.05 * self.size + 2.0


@dataclass
class Thing:
    """An object: nominal box (x0, y0, w, h), mirrored when ``facing`` is -1."""

    cat: str
    x0: float
    y0: float
    w: float
    h: float
    facing: int = 1
    colour: tuple[int, int, int] = (128, 128, 128)
    grip_rel: Point | None = None  # kite string end, relative to (x0, y0), unmirrored pixels

    def point(self, fx: float, fy: float) -> np.ndarray:
        """Image point of the nominal-box fraction (fx, fy), mirrored for facing -1."""
        fx = fx if self.facing > 0 else 1.0 - fx
        return np.array([self.x0 + fx * self.w, self.y0 + fy * self.h])

    def translate(self, dx: float, dy: float) -> None:
        self.x0 += dx
        self.y0 += dy

    @property
    def centre(self) -> np.ndarray:
        return np.array([self.x0 + self.w / 2, self.y0 + self.h / 2])

    def grip(self) -> tuple[np.ndarray, float]:
        """(point, radius) a hand must reach to hold the thing."""
        if self.cat == "kite":
            return np.array([self.x0 + self.grip_rel[0], self.y0 + self.grip_rel[1]]), 0.1 * self.w
        if self.cat == "umbrella":
            return self.point(0.5, 1.0), 0.08 * self.w
        return self.centre, 0.5 * max(self.w, self.h)

    def seat(self) -> np.ndarray:
        return self.point(*SEAT[self.cat])

    def approx_box(self) -> np.ndarray:
        box = np.array([self.x0, self.y0, self.x0 + self.w, self.y0 + self.h])
        if self.grip_rel is not None:
            g, _ = self.grip()
            box = np.array(
                [min(box[0], g[0]), min(box[1], g[1]), max(box[2], g[0]), max(box[3], g[1])]
            )
        return box


def make_thing(cat: str, size: float, facing: int, colour: tuple[int, int, int]) -> Thing:
    """A thing of category ``cat`` for reference person height ``size``, at the origin."""
    fw, fh = THING_SIZE[cat]
    return Thing(cat, 0.0, 0.0, fw * size, fh * size, facing, colour)


def pose(p: Person) -> dict[str, np.ndarray]:
    """Compute (and store in ``p.kp``) the keypoints of a person from its pose parameters."""
    P, d = p.size, p.facing
    v = lambda x, y: np.array([x, y], dtype=float)  # noqa: E731
    hip = v(*p.hip) if p.hip is not None else v(p.x, p.ground - 0.47 * P)
    neck = hip + v(0, -0.3 * P)
    head_r = 0.085 * P
    kp = {"hip": hip, "neck": neck, "head": neck + v(0, -head_r - 0.01 * P)}
    kp["head_r"] = np.array([head_r, head_r])
    S = neck + v(0, 0.04 * P)
    kp["shoulder"] = S
    arm_table = {
        "down": lambda s: ((0.07 * s, 0.17), (0.1 * s, 0.33)),
        "hold": lambda s: ((0.13 * s, 0.14), (0.28 * s, 0.1)),
        "hold_back": lambda s: ((0.1 * s, 0.15), (0.22 * s, 0.24)),
        "raise": lambda s: ((0.13 * s, -0.08), (0.08 * s, -0.3)),
        "carry": lambda s: ((0.15 * s, -0.12), (0.09 * s, -0.33)),
    }
    u = np.array([math.cos(p.point_dir), math.sin(p.point_dir)])
    arm_table["point"] = lambda s: (tuple(0.17 * u), tuple(0.36 * u))
    for name, mode, side in (("front", p.arms[0], d), ("back", p.arms[1], -d)):
        (ex, ey), (hx, hy) = arm_table[mode](side)
        kp[f"elbow_{name}"] = S + v(ex * P, ey * P)
        kp[f"hand_{name}"] = S + v(hx * P, hy * P)
    for name, side in (("front", d), ("back", -d)):
        if p.legs == "stand" or (p.legs == "kick" and name == "back"):
            knee, foot = hip + v(0.05 * side * P, 0.24 * P), v(hip[0] + 0.1 * side * P, p.ground)
        elif p.legs == "kick":
            knee, foot = hip + v(0.17 * d * P, 0.19 * P), hip + v(0.33 * d * P, 0.34 * P)
        elif p.legs == "sit":
            off = 0.03 * P * (1 if name == "front" else -1)
            knee = hip + v(0.2 * d * P + off, 0.0)
            foot = v(knee[0] + 0.02 * d * P, p.ground)
        else:  # ride: legs hang down the animal's / bicycle's side
            off = 0.03 * P * (1 if name == "front" else -1)
            knee, foot = hip + v(0.1 * d * P + off, 0.17 * P), hip + v(0.05 * d * P + off, 0.34 * P)
        kp[f"knee_{name}"], kp[f"foot_{name}"] = knee, foot
    p.kp = kp
    return kp


def person_approx_box(p: Person) -> np.ndarray:
    pts = np.stack([v for k, v in p.kp.items() if k != "head_r"])
    r = p.kp["head_r"][0] + 0.12 * p.size  # head plus gaze marker
    lo, hi = pts.min(0) - p.lw, pts.max(0) + p.lw
    head = p.kp["head"]
    return np.array(
        [min(lo[0], head[0] - r), min(lo[1], head[1] - r), max(hi[0], head[0] + r), hi[1]]
    )


# ----------------------------------------------------------------------------------- drawing


def _c(colour: tuple[int, int, int], mask: bool) -> int | tuple[int, int, int]:
    return 255 if mask else colour


def _dark(colour: tuple[int, int, int], f: float = 0.55) -> tuple[int, int, int]:
    return tuple(int(c * f) for c in colour)  # type: ignore[return-value]


def draw_person(
    draw: ImageDraw.ImageDraw, p: Person, mask: bool = False, marker: bool = True
) -> None:
    """Draw a stick figure: legs, torso, arms, head with an eye and a gaze marker (a nose-like
    triangle pointing along ``p.gaze``)."""
    kp, lw = p.kp, p.lw
    for side in ("back", "front"):
        pts = [tuple(kp["hip"]), tuple(kp[f"knee_{side}"]), tuple(kp[f"foot_{side}"])]
        draw.line(pts, fill=_c(p.pants, mask), width=lw, joint="curve")
    draw.line([tuple(kp["neck"]), tuple(kp["hip"])], fill=_c(p.shirt, mask), width=round(lw * 1.8))
    for side in ("back", "front"):
        pts = [tuple(kp["shoulder"]), tuple(kp[f"elbow_{side}"]), tuple(kp[f"hand_{side}"])]
        draw.line(pts, fill=_c(p.shirt, mask), width=lw, joint="curve")
    hx, hy = kp["head"]
    r = kp["head_r"][0]
    draw.ellipse(
        [hx - r, hy - r, hx + r, hy + r], fill=_c(p.skin, mask), outline=_c((20, 20, 20), mask)
    )
    if not marker:
        return
    u = np.array([math.cos(p.gaze), math.sin(p.gaze)])
    n = np.array([-u[1], u[0]])
    c = np.array([hx, hy])
    tip, b1, b2 = (
        c + (r + 0.1 * p.size) * u,
        c + 0.8 * r * u + 0.45 * r * n,
        c + 0.8 * r * u - 0.45 * r * n,
    )
    draw.polygon([tuple(tip), tuple(b1), tuple(b2)], fill=_c((15, 15, 15), mask))
    e = c + 0.4 * r * u
    er = max(1.0, 0.22 * r)
    draw.ellipse([e[0] - er, e[1] - er, e[0] + er, e[1] + er], fill=_c((255, 255, 255), mask))


def draw_thing(draw: ImageDraw.ImageDraw, t: Thing, mask: bool = False) -> None:
    """Draw one object with its category's distinctive shape."""
    col, dark = _c(t.colour, mask), _c(_dark(t.colour), mask)
    lw = max(2, round(0.05 * min(t.w, t.h) + 1))
    pt = lambda fx, fy: tuple(t.point(fx, fy))  # noqa: E731
    if t.cat == "ball":
        draw.ellipse([t.x0, t.y0, t.x0 + t.w, t.y0 + t.h], fill=col, outline=dark)
        draw.arc(
            [t.x0 + 0.15 * t.w, t.y0, t.x0 + 0.85 * t.w, t.y0 + t.h],
            100,
            260,
            fill=_c((255, 255, 255), mask),
            width=max(1, lw // 2),
        )
    elif t.cat == "cup":
        draw.polygon(
            [pt(0.0, 0.0), pt(0.75, 0.0), pt(0.65, 1.0), pt(0.1, 1.0)], fill=col, outline=dark
        )
        x0, x1 = sorted((t.point(0.6, 0)[0], t.point(1.0, 0)[0]))
        draw.arc(
            [x0, t.y0 + 0.2 * t.h, x1, t.y0 + 0.7 * t.h], 0, 360, fill=dark, width=max(1, lw // 2)
        )
    elif t.cat == "book":
        draw.rectangle([t.x0, t.y0, t.x0 + t.w, t.y0 + t.h], fill=col, outline=dark, width=1)
        draw.line([pt(0.12, 0.0), pt(0.12, 1.0)], fill=dark, width=lw)
        draw.line([pt(0.3, 0.35), pt(0.85, 0.35)], fill=_c((250, 250, 250), mask), width=1)
    elif t.cat == "umbrella":
        draw.chord([t.x0, t.y0, t.x0 + t.w, t.y0 + 0.7 * t.h], 180, 360, fill=col, outline=dark)
        draw.line([pt(0.5, 0.33), pt(0.5, 0.92)], fill=_c((40, 40, 40), mask), width=lw)
        draw.arc(
            [*pt(0.5, 0.84), *pt(0.62, 1.0)] if t.facing > 0 else [*pt(0.62, 0.84), *pt(0.5, 1.0)],
            0,
            180,
            fill=_c((40, 40, 40), mask),
            width=lw,
        )
    elif t.cat == "kite":
        diamond = [pt(0.5, 0.0), pt(1.0, 0.4), pt(0.5, 1.0), pt(0.0, 0.4)]
        draw.polygon(diamond, fill=col, outline=dark)
        draw.line([pt(0.5, 0.0), pt(0.5, 1.0)], fill=dark, width=1)
        g, _ = t.grip()
        draw.line([pt(0.5, 1.0), tuple(g)], fill=_c((230, 230, 230), mask), width=1)
        for k in range(3):  # bows on the string
            q = t.point(0.5, 1.0) + (k + 1) / 4 * (g - t.point(0.5, 1.0))
            draw.polygon(
                [
                    (q[0] - 3, q[1] - 2),
                    (q[0] + 3, q[1] + 2),
                    (q[0] + 3, q[1] - 2),
                    (q[0] - 3, q[1] + 2),
                ],
                fill=col,
            )
    elif t.cat == "horse":
        draw.ellipse(
            [*pt(0.15, 0.3), *pt(0.8, 0.62)] if t.facing > 0 else [*pt(0.8, 0.3), *pt(0.15, 0.62)],
            fill=col,
            outline=dark,
        )
        for fx in (0.22, 0.32, 0.63, 0.73):
            draw.line([pt(fx, 0.55), pt(fx + 0.01, 1.0)], fill=col, width=lw + 1)
        draw.polygon(
            [
                pt(0.66, 0.33),
                pt(0.84, 0.02),
                pt(0.93, 0.0),
                pt(1.0, 0.18),
                pt(0.9, 0.22),
                pt(0.8, 0.45),
            ],
            fill=col,
            outline=dark,
        )
        draw.line([pt(0.16, 0.36), pt(0.03, 0.66)], fill=dark, width=lw + 1)
        draw.line([pt(0.86, 0.04), pt(0.72, 0.36)], fill=dark, width=lw)  # mane
    elif t.cat == "bicycle":
        r = 0.21 * t.w
        for fx in (r / t.w, 1.0 - r / t.w):
            c = t.point(fx, 1.0 - r / t.h)
            draw.ellipse(
                [c[0] - r, c[1] - r, c[0] + r, c[1] + r], outline=_c((25, 25, 25), mask), width=lw
            )
        crank, rear, front = (
            t.point(0.48, 1.0 - r / t.h),
            t.point(r / t.w, 1.0 - r / t.h),
            t.point(1.0 - r / t.w, 1.0 - r / t.h),
        )
        seat, bar = t.point(0.38, 0.08), t.point(0.8, 0.1)
        draw.line([tuple(rear), tuple(crank), tuple(seat), tuple(rear)], fill=col, width=lw)
        draw.line([tuple(crank), tuple(bar), tuple(seat)], fill=col, width=lw)
        draw.line([tuple(bar), tuple(front)], fill=col, width=lw)
        draw.line([pt(0.3, 0.04), pt(0.46, 0.04)], fill=_c((20, 20, 20), mask), width=lw + 1)
        draw.line([pt(0.74, 0.0), pt(0.86, 0.0)], fill=_c((20, 20, 20), mask), width=lw)
    elif t.cat == "chair":
        draw.line([pt(0.1, 0.0), pt(0.1, 1.0)], fill=col, width=lw + 1)
        draw.line([pt(0.1, 0.5), pt(0.95, 0.5)], fill=col, width=lw + 2)
        draw.line([pt(0.9, 0.5), pt(0.9, 1.0)], fill=col, width=lw + 1)
        draw.line([pt(0.1, 0.12), pt(0.1, 0.35)], fill=dark, width=lw + 3)
    else:  # pragma: no cover - categories are fixed
        raise ValueError(f"unknown synthetic category {t.cat!r}")


def background(rng: np.random.Generator, width: int, height: int) -> Image.Image:
    """A textured background: a sky/ground gradient, stripes or blotches, plus pixel noise."""
    yy, xx = np.mgrid[0:height, 0:width].astype(np.float32)
    kind = int(rng.integers(3))
    c1, c2 = rng.uniform(60, 235, 3), rng.uniform(60, 235, 3)
    if kind == 0:  # gradient with a horizon
        t = np.clip(yy / height + rng.uniform(-0.2, 0.2), 0, 1)[..., None]
    elif kind == 1:  # stripes at a random angle
        a, f = rng.uniform(0, math.pi), rng.uniform(0.03, 0.12)
        t = (0.5 + 0.5 * np.sin(f * (xx * math.cos(a) + yy * math.sin(a))))[..., None]
    else:  # smooth blotches from a coarse random grid
        coarse = rng.uniform(0, 1, (height // 32 + 2, width // 32 + 2)).astype(np.float32)
        img = Image.fromarray((coarse * 255).astype(np.uint8)).resize(
            (width, height), Image.BILINEAR
        )
        t = (np.asarray(img, dtype=np.float32) / 255.0)[..., None]
    arr = c1 * (1 - t) + c2 * t + rng.normal(0, 12, (height, width, 3))
    return Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8), "RGB")


def tight_box(
    entity: Person | Thing, size: tuple[int, int], marker: bool = True
) -> np.ndarray | None:
    """The drawn pixels' bounding box [x1, y1, x2, y2) (0-based, x2/y2 exclusive), or None when
    the entity falls outside the image."""
    m = Image.new("L", size, 0)
    d = ImageDraw.Draw(m)
    if isinstance(entity, Person):
        draw_person(d, entity, mask=True, marker=marker)
    else:
        draw_thing(d, entity, mask=True)
    bb = m.getbbox()
    return None if bb is None else np.array(bb, dtype=float)
