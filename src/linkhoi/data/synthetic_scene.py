"""Scenes of the synthetic HOI world: what each person does, the layout, the interaction rules.

``make_scene`` samples people (pose, held / ridden / carried objects, gaze, a pointing arm) and
free objects, lays them out without overlaps, measures the tight boxes of the drawn pixels and
labels every (person, other entity) pair with ``synthetic_rules.scene_truth``: the labels are a
function of the drawing. Distractors keep chance low: idle people, people looking at nothing,
free objects (often right next to someone who ignores them), several instances of a category.
``render`` draws a scene. File output is in ``synthetic.py``.
"""

from __future__ import annotations

import math
from collections.abc import Iterable
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
from linkhoi.data.synthetic_rules import first_hit, scene_truth

# Scene sampler weights: they make some compositions rare by design (label space `rare`).
LEGS = [("stand", None, 0.43), ("ride", "horse", 0.12), ("ride", "bicycle", 0.12),
        ("sit", "chair", 0.13), ("kick", "ball", 0.20)]  # fmt: skip
HOLD_W = {"ball": 0.15, "cup": 0.3, "umbrella": 0.2, "book": 0.27, "kite": 0.04}
CARRY_W = {"book": 0.55, "ball": 0.15, "chair": 0.15, "bicycle": 0.15}
FREE_W = {"ball": 0.15, "cup": 0.15, "horse": 0.08, "bicycle": 0.1, "umbrella": 0.15,
          "book": 0.15, "kite": 0.07, "chair": 0.12}  # fmt: skip
IDLE, POINT, LOOK = 0.2, 0.14, 0.35  # P(a person does nothing / points / looks at something)
NEAR_FREE = 0.5  # P(a free object is placed right next to a person)


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


# ----------------------------------------------------------------------------- scene sampling


def _pick(
    rng: np.random.Generator, weights: dict[str, float], absent: frozenset = frozenset()
) -> str:
    keys = [k for k in weights if k not in absent]
    w = np.array([weights[k] for k in keys])
    return keys[int(rng.choice(len(keys), p=w / w.sum()))]


def _plan(
    rng: np.random.Generator,
    banned: set[tuple[str, str]],
    force: tuple[str, str] | None,
    absent: frozenset = frozenset(),
) -> dict:
    """Sample what one person does: legs (stand/ride/sit/kick), front and back arm, look;
    or nothing at all (idle). ``absent`` object categories are never used."""
    for _ in range(100):
        plan: dict[str, Any] = {"legs": ("stand", None), "front": None, "back": None,
                                "look": None, "idle": rng.uniform() < IDLE}  # fmt: skip
        if plan["idle"] and force is None:
            return plan
        plan["idle"] = False
        legs = [x for x in LEGS if x[1] not in absent]
        w = np.array([x[2] for x in legs])
        plan["legs"] = legs[int(rng.choice(len(legs), p=w / w.sum()))][:2]
        u = rng.uniform()
        if u < 0.14 and plan["legs"][0] == "stand":
            plan["front"] = ("carry", _pick(rng, CARRY_W, absent))
        elif u < 0.56:
            plan["front"] = ("hold", _pick(rng, HOLD_W, absent))
        elif rng.uniform() < POINT / 0.44:
            plan["front"] = ("point", None)
        if plan["front"] is None or plan["front"][0] in ("hold", "point"):
            v = rng.uniform()
            if v < 0.2 and "ball" not in absent:
                plan["back"] = ("raise", "ball")
            elif v < 0.3:
                plan["back"] = ("hold_back", _pick(rng, HOLD_W, absent))
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
        comps |= {_comp(a) for a in (plan["front"], plan["back"]) if a is not None and a[1]}
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
        {"hold": "hold", "carry": "carry", "point": "point"}.get(plan["front"][0], "down")
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
        if action is None or action[0] == "point":
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


def _free_thing(
    rng: np.random.Generator, cat: str, W: int, H: int, beside: np.ndarray | None = None
) -> Thing:
    """A free object; ``beside`` (a person group's box) places it just left or right of it."""
    P = rng.uniform(0.23, 0.31) * H
    t = make_thing(cat, P, 1 if rng.uniform() < 0.5 else -1, _colour(rng, THING_COLOURS[cat]))
    if beside is not None:
        gap = rng.uniform(0.065, 0.1) * H
        x = beside[2] + gap if rng.uniform() < 0.5 else beside[0] - gap - t.w
    else:
        x = rng.uniform(0, W - t.w)
    if cat == "kite":
        t.translate(x, rng.uniform(0.03, 0.3) * H)
        t.grip_rel = (0.5 * t.w + rng.uniform(-0.5, 0.5) * t.w, t.h * rng.uniform(1.3, 1.8))
    else:
        t.translate(x, rng.uniform(0.8, 0.97) * H - t.h)
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
    absent: frozenset[str] = frozenset(),
) -> Scene:
    """Sample, lay out and label one scene (drawing happens in ``render``). ``banned``
    compositions never occur, ``absent`` object categories are never drawn; ``force`` makes
    the first person do that composition."""
    W, H = size
    for _attempt in range(200):
        scene = _try_scene(rng, file_name, W, H, banned, force, absent)
        if scene is not None:
            return scene
    raise SyntheticError(
        f"{file_name}: no valid scene after 200 attempts (image {W}x{H} too small?)"
    )


def _aim(rng: np.random.Generator, origin: np.ndarray, box: np.ndarray) -> float:
    """An angle from ``origin`` to a random point of the middle of ``box``."""
    aim = box[:2] + (box[2:] - box[:2]) * rng.uniform(0.3, 0.7, 2)
    return math.atan2(aim[1] - origin[1], aim[0] - origin[0])


def _try_scene(
    rng: np.random.Generator,
    file_name: str,
    W: int,
    H: int,
    banned: set[tuple[str, str]],
    force: tuple[str, str] | None,
    absent: frozenset[str],
) -> Scene | None:
    """One attempt at a scene; None when the layout or the constraints fail."""
    n_people = int(rng.choice([1, 2, 3, 4, 5], p=[0.1, 0.3, 0.3, 0.2, 0.1]))
    if force is not None and force == ("look", "person"):
        n_people = max(n_people, 2)
    people: list[Person] = []
    plans: list[dict] = []
    things: list[tuple[int, Thing]] = []  # (z order, thing)
    placed: list[np.ndarray] = []
    for k in range(n_people):
        plan = _plan(rng, banned, force if k == 0 else None, absent)
        for _ in range(15):
            p, own = _group(rng, plan, rng.uniform(0.23, 0.31) * H, rng.uniform(0.82, 0.97) * H)
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
        plans.append(plan)
        placed.append(gb + np.array([dx, 0, dx, 0]))
    groups = list(placed)
    wanted = [
        _pick(rng, FREE_W, absent)
        for _ in range(int(rng.choice([1, 2, 3, 4], p=[0.3, 0.35, 0.2, 0.15])))
    ]
    need = force is not None and force[0] == "look" and force[1] != "person"
    if need and all(t.cat != force[1] for _, t in things):
        wanted.insert(0, force[1])
    for cat in wanted:
        for _ in range(15):
            near = groups[int(rng.integers(len(groups)))] if rng.uniform() < NEAR_FREE else None
            t = _free_thing(rng, cat, W, H, near)
            b = t.approx_box()
            if b[0] >= 1 and b[2] <= W - 1 and not _overlaps(b, placed, 0.06 * H):
                things.append((0, t))
                placed.append(b)
                break
        else:
            if need and cat == force[1]:
                return None
    things.sort(key=lambda zt: zt[0])
    ordered = [t for _, t in things]
    entities: list[Person | Thing] = [*people, *ordered]
    labels = ["person"] * len(people) + [t.cat for t in ordered]
    boxes0 = [tight_box(e, (W, H), marker=False) for e in entities]
    if any(b is None for b in boxes0):
        return None
    banned_look = {o for v, o in banned if v == "look"}
    for i, (p, plan) in enumerate(zip(people, plans, strict=True)):
        others = [j for j in range(len(entities)) if j != i]
        if p.arms[0] == "point":
            p.point_dir = _aim(rng, p.kp["shoulder"], boxes0[int(rng.choice(others))])
            pose(p)
        targets = [j for j in others if labels[j] not in banned_look]
        if plan["look"] is not None:
            targets = [j for j in targets if labels[j] == plan["look"]]
            if not targets:
                return None
        if plan["look"] is not None or (targets and not plan["idle"] and rng.uniform() < LOOK):
            p.gaze = _aim(rng, p.kp["head"], boxes0[int(rng.choice(targets))])
        else:
            for _ in range(24):
                p.gaze = rng.uniform(-math.pi, math.pi)
                if first_hit(p.kp["head"], p.gaze, boxes0, skip=i) is None:
                    break
    boxes = [tight_box(e, (W, H)) for e in entities]
    if any(b is None for b in boxes):
        return None
    truth = scene_truth(people, entities, boxes)
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
