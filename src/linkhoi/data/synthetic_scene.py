"""Scenes of the synthetic HOI world: what each person does, the layout, the interaction rules.

``make_scene`` samples people (pose, held / ridden / carried objects, gaze) and free objects,
lays them out without overlaps, measures the tight boxes of the drawn pixels and labels every
(person, other entity) pair with ``pair_verbs``: the labels are a function of the drawing.
``render`` draws a scene. File output is in ``synthetic.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
from PIL import Image, ImageDraw

from linkhoi.data.synthetic_draw import (
    PANTS,
    SKIN,
    THING_COLOURS,
    Person,
    Thing,
    background,
    draw_person,
    draw_thing,
    make_thing,
    person_approx_box,
    pose,
    tight_box,
)

HOLDABLE = ("ball", "cup", "umbrella", "book", "kite")
CARRYABLE = ("ball", "book", "chair", "bicycle")
RIDEABLE = ("horse", "bicycle")
# Scene sampler weights: they make some compositions rare by design (label space `rare`).
LEGS = [("stand", None, 0.43), ("ride", "horse", 0.12), ("ride", "bicycle", 0.12),
        ("sit", "chair", 0.13), ("kick", "ball", 0.20)]  # fmt: skip
HOLD_W = {"ball": 0.15, "cup": 0.3, "umbrella": 0.2, "book": 0.27, "kite": 0.04}
CARRY_W = {"book": 0.55, "ball": 0.15, "chair": 0.15, "bicycle": 0.15}
FREE_W = {"ball": 0.15, "cup": 0.15, "horse": 0.08, "bicycle": 0.1, "umbrella": 0.15,
          "book": 0.15, "kite": 0.07, "chair": 0.12}  # fmt: skip


class SyntheticError(ValueError):
    """Bad arguments to the synthetic world generator."""


@dataclass
class Scene:
    """One drawn image: entities (people first), their tight boxes [x1, y1, x2, y2) (0-based,
    exclusive), names, and the true (human index, entity index, verb) triples."""

    file_name: str
    width: int
    height: int
    people: list[Person]
    things: list[Thing]
    boxes: np.ndarray
    labels: list[str]
    truth: list[tuple[int, int, str]]
    z: list[int]  # per thing: drawn before the people when < 2 (free objects, mounts)


# -------------------------------------------------------------------------- interaction rules


def ray_hits(origin: np.ndarray, theta: float, box: Sequence[float]) -> bool:
    """Whether the ray from ``origin`` along angle ``theta`` enters ``box`` from outside."""
    x1, y1, x2, y2 = box
    if x1 <= origin[0] <= x2 and y1 <= origin[1] <= y2:
        return False
    d = (math.cos(theta), math.sin(theta))
    tmin, tmax = 0.0, math.inf
    for o, di, lo, hi in ((origin[0], d[0], x1, x2), (origin[1], d[1], y1, y2)):
        if abs(di) < 1e-12:
            if not lo <= o <= hi:
                return False
            continue
        t1, t2 = (lo - o) / di, (hi - o) / di
        tmin, tmax = max(tmin, min(t1, t2)), min(tmax, max(t1, t2))
    return tmax >= tmin


def pair_verbs(p: Person, e: Person | Thing, box: Sequence[float]) -> list[str]:
    """The verbs person ``p`` does with entity ``e`` (tight box ``box``), from the geometry.

    ride: hip over the middle of a horse/bicycle, within its top 42%; sit_on: hip at a chair's
    seat height; kick: a foot touches a ball; carry: both hands on an object whose bottom is
    above the head top; hold: a hand at the object's grip (and not carried); throw: a raised
    hand near a ball that is in the air above the neck and not held; look: the gaze ray from
    the head enters the box.
    """
    kp, tol = p.kp, p.tol
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    verbs: list[str] = []
    if isinstance(e, Thing):
        hip, hands = kp["hip"], (kp["hand_front"], kp["hand_back"])
        if (
            e.cat in RIDEABLE
            and x1 + 0.15 * w <= hip[0] <= x2 - 0.15 * w
            and y1 - 0.1 * h <= hip[1] <= y1 + 0.42 * h
        ):
            verbs.append("ride")
        if e.cat == "chair" and x1 <= hip[0] <= x2 and y1 + 0.25 * h <= hip[1] <= y1 + 0.65 * h:
            verbs.append("sit_on")
        r, c = e.w / 2, e.centre
        if (
            e.cat == "ball"
            and min(np.hypot(*(kp[f] - c)) for f in ("foot_front", "foot_back")) <= r + tol
        ):
            verbs.append("kick")
        head_top = kp["head"][1] - kp["head_r"][0]
        carry = (
            e.cat in CARRYABLE
            and all(x1 - tol <= q[0] <= x2 + tol and y1 - tol <= q[1] <= y2 + tol for q in hands)
            and y2 <= head_top + tol
        )
        g, gr = e.grip()
        hold = (
            e.cat in HOLDABLE and not carry and any(np.hypot(*(q - g)) <= gr + tol for q in hands)
        )
        if carry:
            verbs.append("carry")
        if hold:
            verbs.append("hold")
        if (
            e.cat == "ball"
            and not (hold or carry)
            and c[1] < kp["neck"][1]
            and any(q[1] < kp["neck"][1] and np.hypot(*(q - c)) <= r + 0.3 * p.size for q in hands)
        ):
            verbs.append("throw")
    if ray_hits(kp["head"], p.gaze, box):
        verbs.append("look")
    return verbs


# ----------------------------------------------------------------------------- scene sampling


def _pick(rng: np.random.Generator, weights: dict[str, float]) -> str:
    keys = list(weights)
    w = np.array([weights[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _plan(
    rng: np.random.Generator, banned: set[tuple[str, str]], force: tuple[str, str] | None
) -> dict:
    """Sample what one person does: legs (stand/ride/sit/kick), front and back arm, look."""
    for _ in range(100):
        li = int(
            rng.choice(len(LEGS), p=np.array([w for *_, w in LEGS]) / sum(w for *_, w in LEGS))
        )
        plan: dict[str, Any] = {"legs": LEGS[li][:2], "front": None, "back": None, "look": None}
        u = rng.uniform()
        if u < 0.14 and plan["legs"][0] == "stand":
            plan["front"] = ("carry", _pick(rng, CARRY_W))
        elif u < 0.56:
            plan["front"] = ("hold", _pick(rng, HOLD_W))
        if plan["front"] is None or plan["front"][0] == "hold":
            v = rng.uniform()
            if v < 0.2:
                plan["back"] = ("raise", "ball")
            elif v < 0.3:
                plan["back"] = ("hold_back", _pick(rng, HOLD_W))
        if force is not None:
            verb, obj = force
            if verb in ("ride", "sit_on", "kick"):
                plan["legs"] = ({"ride": "ride", "sit_on": "sit", "kick": "kick"}[verb], obj)
            elif verb == "hold":
                plan["front"] = ("hold", obj)
            elif verb == "carry":
                plan["legs"], plan["front"], plan["back"] = ("stand", None), ("carry", obj), None
            elif verb == "throw":
                plan["back"] = ("raise", "ball")
            elif verb == "look":
                plan["look"] = obj
        comps = {_comp(plan["legs"])}
        comps |= {_comp(a) for a in (plan["front"], plan["back"]) if a is not None}
        if not comps & banned:
            return plan
    raise SyntheticError(
        f"cannot sample a scene without the held-out compositions {sorted(banned)}"
    )


def _comp(action: tuple[str, str | None]) -> tuple[str, str]:
    verb = {"sit": "sit_on", "raise": "throw", "hold_back": "hold"}.get(action[0], action[0])
    return (verb, action[1] or "")


def _colour(rng: np.random.Generator, palette: list[tuple[int, int, int]]) -> tuple[int, int, int]:
    base = np.array(palette[int(rng.integers(len(palette)))])
    return tuple(int(c) for c in np.clip(base + rng.integers(-15, 16, 3), 0, 255))  # type: ignore[return-value]


def _attach(t: Thing, anchor: np.ndarray, fx: float, fy: float) -> Thing:
    """Move ``t`` so that its nominal-box fraction (fx, fy) lies on ``anchor``."""
    q = t.point(fx, fy)
    t.translate(anchor[0] - q[0], anchor[1] - q[1])
    return t


def _group(
    rng: np.random.Generator, plan: dict, P: float, ground: float
) -> tuple[Person, list[Thing]]:
    """Build one person and the objects of their plan, with the person at x = 0."""
    d = 1 if rng.uniform() < 0.5 else -1
    shirt = tuple(int(c) for c in rng.integers(30, 240, 3))
    p = Person(0.0, ground, P, d, skin=SKIN[int(rng.integers(len(SKIN)))], shirt=shirt,
               pants=PANTS[int(rng.integers(len(PANTS)))])  # fmt: skip
    new = lambda cat: make_thing(cat, P, d, _colour(rng, THING_COLOURS[cat]))  # noqa: E731
    things: list[Thing] = []
    legs, mount = plan["legs"]
    if legs in ("ride", "sit"):
        t = new(mount)
        t.y0 = ground - t.h
        t.translate(-t.seat()[0], 0)
        p.hip = (t.seat()[0], t.seat()[1] - 0.02 * P)
        things.append(t)
    p.legs = legs
    front = (
        {"hold": "hold", "carry": "carry"}.get(plan["front"][0], "down")
        if plan["front"]
        else "down"
    )
    back = plan["back"][0] if plan["back"] else ("carry" if front == "carry" else "down")
    p.arms = (front, back)
    kp = pose(p)
    if legs == "kick":
        t = new("ball")
        r = t.w / 2
        things.append(
            _attach(t, kp["foot_front"] + np.array([d * (r + 0.01 * P), -0.2 * r]), 0.5, 0.5)
        )
    for action, hand in ((plan["front"], kp["hand_front"]), (plan["back"], kp["hand_back"])):
        if action is None:
            continue
        kind, cat = action
        t = new(cat)
        if kind == "carry":
            top_hand = min(kp["hand_front"][1], kp["hand_back"][1])
            things.append(_attach(t, np.array([kp["hip"][0], top_hand + 1.0]), 0.5, 1.0))
            break
        if kind == "raise":
            things.append(_attach(t, hand + np.array([d * 0.14 * P, -0.14 * P]), 0.5, 0.5))
        elif cat == "kite":
            _attach(t, hand + np.array([d * 0.3 * P, -0.75 * P]), 0.5, 0.5)
            t.grip_rel = (hand[0] - t.x0, hand[1] - t.y0)
            things.append(t)
        elif cat == "umbrella":
            things.append(_attach(t, hand, 0.5, 1.0))
        else:
            things.append(_attach(t, hand + np.array([d * 0.3 * t.w, -0.1 * t.h]), 0.5, 0.5))
    return p, things


def _free_thing(rng: np.random.Generator, cat: str, W: int, H: int) -> Thing:
    P = rng.uniform(0.27, 0.36) * H
    t = make_thing(cat, P, 1 if rng.uniform() < 0.5 else -1, _colour(rng, THING_COLOURS[cat]))
    if cat == "kite":
        t.translate(rng.uniform(0, W - t.w), rng.uniform(0.03, 0.3) * H)
        t.grip_rel = (0.5 * t.w + rng.uniform(-0.5, 0.5) * t.w, t.h * rng.uniform(1.3, 1.8))
    else:
        t.translate(rng.uniform(0, W - t.w), rng.uniform(0.8, 0.97) * H - t.h)
    return t


def _overlaps(box: np.ndarray, others: Iterable[np.ndarray], margin: float) -> bool:
    return any(
        box[0] < o[2] + margin
        and o[0] < box[2] + margin
        and box[1] < o[3] + margin
        and o[1] < box[3] + margin
        for o in others
    )


def _union(boxes: Iterable[np.ndarray]) -> np.ndarray:
    b = np.stack(list(boxes))
    return np.concatenate([b[:, :2].min(0), b[:, 2:].max(0)])


def make_scene(
    rng: np.random.Generator,
    file_name: str,
    size: tuple[int, int],
    banned: set[tuple[str, str]] = frozenset(),  # type: ignore[assignment]
    force: tuple[str, str] | None = None,
) -> Scene:
    """Sample, lay out and label one scene (drawing happens in ``render``). ``banned``
    compositions never occur; ``force`` makes the first person do that composition."""
    W, H = size
    for _attempt in range(200):
        scene = _try_scene(rng, file_name, W, H, banned, force)
        if scene is not None:
            return scene
    raise SyntheticError(
        f"{file_name}: no valid scene after 200 attempts (image {W}x{H} too small?)"
    )


def _try_scene(
    rng: np.random.Generator,
    file_name: str,
    W: int,
    H: int,
    banned: set[tuple[str, str]],
    force: tuple[str, str] | None,
) -> Scene | None:
    """One attempt at a scene; None when the layout or the constraints fail."""
    n_people = int(rng.choice([1, 2, 3], p=[0.35, 0.45, 0.2]))
    if force is not None and force == ("look", "person"):
        n_people = max(n_people, 2)
    people: list[Person] = []
    things: list[tuple[int, Thing]] = []  # (z order, thing)
    placed: list[np.ndarray] = []
    looks: list[str | None] = []
    for k in range(n_people):
        plan = _plan(rng, banned, force if k == 0 else None)
        for _ in range(15):
            p, own = _group(rng, plan, rng.uniform(0.27, 0.36) * H, rng.uniform(0.82, 0.97) * H)
            gb = _union([person_approx_box(p)] + [t.approx_box() for t in own])
            lo, hi = 2 - gb[0], W - 2 - gb[2]
            if gb[1] < 2 or hi < lo:
                continue
            dx = rng.uniform(lo, hi)
            if not _overlaps(gb + np.array([dx, 0, dx, 0]), placed, 0.05 * H):
                break
        else:
            if k == 0:
                return None
            continue
        p.x += dx
        p.hip = None if p.hip is None else (p.hip[0] + dx, p.hip[1])
        pose(p)
        for t in own:
            t.translate(dx, 0)
            mount = plan["legs"][0] in ("ride", "sit") and t is own[0]
            things.append((1 if mount else 3, t))
        people.append(p)
        looks.append(plan["look"])
        placed.append(gb + np.array([dx, 0, dx, 0]))
    n_free = int(rng.choice([0, 1, 2], p=[0.3, 0.45, 0.25]))
    wanted = [_pick(rng, FREE_W) for _ in range(n_free)]
    need = force is not None and force[0] == "look" and force[1] != "person"
    if need and all(t.cat != force[1] for _, t in things):
        wanted.insert(0, force[1])
    for cat in wanted:
        for _ in range(15):
            t = _free_thing(rng, cat, W, H)
            if not _overlaps(t.approx_box(), placed, 0.06 * H):
                things.append((0, t))
                placed.append(t.approx_box())
                break
        else:
            if force is not None and cat == force[1]:
                return None
    things.sort(key=lambda zt: zt[0])
    ordered = [t for _, t in things]
    entities: list[Person | Thing] = [*people, *ordered]
    labels = ["person"] * len(people) + [t.cat for t in ordered]
    boxes0 = [tight_box(e, (W, H), marker=False) for e in entities]
    if any(b is None for b in boxes0):
        return None
    banned_look = {o for v, o in banned if v == "look"}
    for i, p in enumerate(people):
        others = [j for j in range(len(entities)) if j != i and labels[j] not in banned_look]
        want = looks[i]
        if want is not None:
            others = [j for j in others if labels[j] == want]
            if not others:
                return None
        if want is not None or (others and rng.uniform() < 0.5):
            b = boxes0[int(rng.choice(others))]
            aim = b[:2] + (b[2:] - b[:2]) * rng.uniform(0.3, 0.7, 2)
            p.gaze = math.atan2(aim[1] - p.kp["head"][1], aim[0] - p.kp["head"][0])
        else:
            for _ in range(24):
                p.gaze = rng.uniform(-math.pi, math.pi)
                if not any(
                    ray_hits(p.kp["head"], p.gaze, boxes0[j])
                    for j in range(len(entities))
                    if j != i
                ):
                    break
    boxes = [tight_box(e, (W, H)) for e in entities]
    truth = [
        (i, j, v)
        for i, p in enumerate(people)
        for j, e in enumerate(entities)
        if j != i
        for v in pair_verbs(p, e, boxes[j])
    ]
    comps = {(v, labels[j]) for _, j, v in truth}
    if comps & banned or (force is not None and force not in comps):
        return None
    z = [zt[0] for zt in things]
    return Scene(file_name, W, H, people, ordered, np.stack(boxes), labels, truth, z)


def render(scene: Scene, rng: np.random.Generator) -> Image.Image:
    """Draw the scene on a textured background: free objects and mounts, people, held objects."""
    img = background(rng, scene.width, scene.height)
    draw = ImageDraw.Draw(img)
    for t, z in zip(scene.things, scene.z, strict=True):
        if z < 2:
            draw_thing(draw, t)
    for p in scene.people:
        draw_person(draw, p)
    for t, z in zip(scene.things, scene.z, strict=True):
        if z >= 2:
            draw_thing(draw, t)
    return img
