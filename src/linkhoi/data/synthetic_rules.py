"""The interaction rules of the synthetic HOI world: every label is a function of the drawing.

Rules read only a person's keypoints (``synthetic_draw.pose``) and the tight boxes of the drawn
pixels. Contact verbs (ride, sit_on, kick, carry, hold, throw) come from ``contact_verbs``; the
ray verbs (look, and the open-vocabulary verb ``point``) go to the *first* box a ray from the
head (gaze) or the pointing hand enters, so a crowded scene never has one gaze on five people.
``is_near`` decides which verb-less pairs are annotated ``no_interaction``.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from linkhoi.data.synthetic_draw import Person, Thing

HOLDABLE = ("ball", "cup", "umbrella", "book", "kite")
CARRYABLE = ("ball", "book", "chair", "bicycle")
RIDEABLE = ("horse", "bicycle")
NEAR = 0.3  # a verb-less pair is "near" when its box gap is below NEAR x the person's height
OPEN_VERB = "point"  # drawn and captioned, but in no HOI label space: open vocabulary


def ray_entry(origin: np.ndarray, theta: float, box: Sequence[float]) -> float | None:
    """Distance along the ray from ``origin`` (angle ``theta``) at which it enters ``box``;
    None when it misses or starts inside the box."""
    x1, y1, x2, y2 = box
    if x1 <= origin[0] <= x2 and y1 <= origin[1] <= y2:
        return None
    d = (math.cos(theta), math.sin(theta))
    tmin, tmax = 0.0, math.inf
    for o, di, lo, hi in ((origin[0], d[0], x1, x2), (origin[1], d[1], y1, y2)):
        if abs(di) < 1e-12:
            if not lo <= o <= hi:
                return None
            continue
        t1, t2 = (lo - o) / di, (hi - o) / di
        tmin, tmax = max(tmin, min(t1, t2)), min(tmax, max(t1, t2))
    return tmin if tmax >= tmin else None


def ray_hits(origin: np.ndarray, theta: float, box: Sequence[float]) -> bool:
    """Whether the ray from ``origin`` along angle ``theta`` enters ``box`` from outside."""
    return ray_entry(origin, theta, box) is not None


def first_hit(
    origin: np.ndarray, theta: float, boxes: Sequence[Sequence[float]], skip: int
) -> int | None:
    """Index of the box (other than ``skip``) the ray enters first, or None."""
    best, best_t = None, math.inf
    for j, b in enumerate(boxes):
        if j == skip:
            continue
        t = ray_entry(origin, theta, b)
        if t is not None and t < best_t:
            best, best_t = j, t
    return best


def box_gap(a: Sequence[float], b: Sequence[float]) -> float:
    """Euclidean gap between two boxes (0 when they touch or overlap)."""
    dx = max(0.0, a[0] - b[2], b[0] - a[2])
    dy = max(0.0, a[1] - b[3], b[1] - a[3])
    return math.hypot(dx, dy)


def is_near(p: Person, pbox: Sequence[float], box: Sequence[float]) -> bool:
    """Whether an entity's box is close enough to a person to annotate the pair at all."""
    return box_gap(pbox, box) <= NEAR * p.size


def contact_verbs(p: Person, e: Person | Thing, box: Sequence[float]) -> list[str]:
    """The contact verbs person ``p`` does with entity ``e`` (tight box ``box``).

    ride: hip over the middle of a horse/bicycle, within its top 42%; sit_on: hip at a chair's
    seat height; kick: a foot touches a ball; carry: both hands on an object whose bottom is
    above the head top; hold: a hand at the object's grip (and not carried); throw: a raised
    hand near a ball that is in the air above the neck and not held.
    """
    if not isinstance(e, Thing):
        return []
    kp, tol = p.kp, p.tol
    x1, y1, x2, y2 = box
    w, h = x2 - x1, y2 - y1
    verbs: list[str] = []
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
    free = [q for q, mode in zip(hands, p.arms, strict=True) if mode != "point"]
    hold = e.cat in HOLDABLE and not carry and any(np.hypot(*(q - g)) <= gr + tol for q in free)
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
    return verbs


def pointing_ray(p: Person) -> tuple[np.ndarray, float] | None:
    """(origin, angle) of the ray of a pointing arm, or None when the person does not point."""
    if "point" not in p.arms:
        return None
    side = "front" if p.arms[0] == "point" else "back"
    return p.kp[f"hand_{side}"], p.point_dir


def scene_truth(
    people: Sequence[Person], entities: Sequence[Person | Thing], boxes: Sequence[Sequence[float]]
) -> list[tuple[int, int, str]]:
    """Every true (person index, entity index, verb), the open verb ``point`` included."""
    truth = []
    for i, p in enumerate(people):
        for j, e in enumerate(entities):
            if j != i:
                truth += [(i, j, v) for v in contact_verbs(p, e, boxes[j])]
        j = first_hit(p.kp["head"], p.gaze, boxes, skip=i)
        if j is not None:
            truth.append((i, j, "look"))
        ray = pointing_ray(p)
        if ray is not None:
            j = first_hit(ray[0], ray[1], boxes, skip=i)
            if j is not None:
                truth.append((i, j, OPEN_VERB))
    return truth
