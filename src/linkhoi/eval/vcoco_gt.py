"""V-COCO keys and ground truth, the arrays :class:`linkhoi.eval.vcoco.VCOCOEvaluator` matches on.

:func:`_classes` maps a ``vcoco`` label space to the official keys (26 ``<action>_agent`` keys,
then 25 ``<action>_<role>`` keys) plus the table giving a detection's key from its (verb, role,
has object box). :func:`_ground_truth` concatenates the GT persons of all images into flat
arrays (boxes, ignored flag, positive actions, role object boxes, positives per action) so that
matching runs over every detection at once. Protocol: docs/evaluation.md (V-COCO).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from linkhoi.eval.base import EvalError
from linkhoi.eval.resolve import ROLES

_ROLE_INDEX = {name: i for i, name in enumerate(ROLES)}  # None -> 0, "obj" -> 1, "instr" -> 2
_AMBIGUOUS_ROLE, _NO_SUCH_ROLE = -2, -3  # negative key_table entries: detection has no key


@dataclass
class _Classes:
    """The V-COCO keys of a label space: 26 agent keys then 25 role keys."""

    actions: tuple[str, ...]  # (A,) action names, official order
    role_keys: list[tuple[int, str]]  # (R,) (action index, role name), official role order
    key_table: np.ndarray  # (A, 3, 2) int: [verb, role index, has object box] -> key
    hoi_action: np.ndarray  # (H,) action index of each HOI position
    hoi_role_key: np.ndarray  # (H,) role key index, -1 for roleless classes
    official_25: list[int]  # role key indices of the official 25-mean
    reporting_24: list[int]  # role key indices of the reported 24-mean

    @property
    def num_keys(self) -> int:
        return len(self.actions) + len(self.role_keys)

    def key_name(self, k: int) -> str:
        a = len(self.actions)
        if k < a:
            return f"{self.actions[k]}_agent"
        act, role = self.role_keys[k - a]
        return f"{self.actions[act]}_{role}"


def _classes(label_space: Any) -> _Classes:
    """The V-COCO keys of ``label_space`` (role keys in first-seen HOI order)."""
    actions = tuple(label_space.verbs)
    verb_pos = {v: i for i, v in enumerate(actions)}
    role_keys: list[tuple[int, str]] = []
    hoi_action = np.empty(len(label_space.hois), dtype=np.int64)
    hoi_role_key = np.full(len(label_space.hois), -1, dtype=np.int64)
    for pos, h in enumerate(label_space.hois):
        hoi_action[pos] = verb_pos[h.verb]
        if h.role is not None:
            key = (verb_pos[h.verb], h.role)
            if key not in role_keys:
                role_keys.append(key)
            hoi_role_key[pos] = role_keys.index(key)
    n_a = len(actions)
    table = np.full((n_a, len(ROLES), 2), _NO_SUCH_ROLE, dtype=np.int64)
    for a in range(n_a):
        mine = [r for r, (act, _) in enumerate(role_keys) if act == a]
        table[a, 0, 0] = a  # role null, no object box: agent-only score
        # role null with an object box: the action's only role, or the agent key when it has
        # none; an action with two roles (hit, eat, cut) needs the role spelled out.
        table[a, 0, 1] = n_a + mine[0] if len(mine) == 1 else (a if not mine else _AMBIGUOUS_ROLE)
        for r in mine:
            ri = _ROLE_INDEX[role_keys[r][1]]
            table[a, ri, :] = n_a + r
    subsets = getattr(label_space, "subsets", {}) or {}

    def role_subset(name: str, default: list[int]) -> list[int]:
        if name not in subsets:
            return default
        return sorted({int(hoi_role_key[p]) for p in subsets[name] if hoi_role_key[p] >= 0})

    all_roles = list(range(len(role_keys)))
    no_point = [r for r, (act, _) in enumerate(role_keys) if actions[act] != "point"]
    return _Classes(
        actions=actions,
        role_keys=role_keys,
        key_table=table,
        hoi_action=hoi_action,
        hoi_role_key=hoi_role_key,
        official_25=role_subset("role_ap_official", all_roles),
        reporting_24=role_subset("reporting_24", no_point),
    )


@dataclass
class _GroundTruth:
    """GT persons of all images, concatenated (P persons, A actions, R role keys)."""

    index: dict[str, int]  # file_name and str(image_id) -> image index
    image_ids: list[int | None]
    person_start: np.ndarray  # (I + 1,) persons of image i are [start[i], start[i+1])
    boxes: np.ndarray  # (P, 4) float32
    ignored: np.ndarray  # (P,) bool, person without V-COCO annotation
    positive: np.ndarray  # (P, A) bool
    role_boxes: np.ndarray  # (P, R, 4) float32, NaN where no role object
    has_role: np.ndarray  # (P, R) bool
    npos: np.ndarray  # (A,) int64


def _ground_truth(samples: list[Any], label_space: Any, cls: _Classes) -> _GroundTruth:
    """GT persons of ``samples`` (I images) as flat arrays, see :class:`_GroundTruth`.

    Raises EvalError for a pair whose human is not an annotated person.
    """
    human = label_space.object_position(label_space.human)
    n_a, n_r = len(cls.actions), len(cls.role_keys)
    index: dict[str, int] = {}
    starts, boxes, ignored, positive, role_boxes, has_role = [0], [], [], [], [], []
    for i, s in enumerate(samples):
        index[s.file_name] = i
        if s.image_id is not None:
            index.setdefault(str(s.image_id), i)
        people = np.flatnonzero(np.asarray(s.labels) == human)
        local = {int(b): k for k, b in enumerate(people)}
        pos = np.zeros((len(people), n_a), dtype=bool)
        rbox = np.full((len(people), n_r, 4), np.nan, dtype=np.float32)
        hrole = np.zeros((len(people), n_r), dtype=bool)
        unann = np.asarray(s.unannotated, dtype=bool)
        for k, pair in enumerate(s.pairs):
            p = local.get(pair.human)
            if p is None or unann[pair.human]:
                why = "not a person" if p is None else "an unannotated (ignored) person"
                raise EvalError(
                    f"ground truth image {s.file_name!r}, field 'pairs[{k}].human': box "
                    f"{pair.human} is {why}; V-COCO pairs need an annotated person"
                )
            pos[p, cls.hoi_action[pair.hoi]] = True
            r = cls.hoi_role_key[pair.hoi]
            if r >= 0 and pair.object is not None:
                hrole[p, r] = True
                rbox[p, r] = s.boxes[pair.object]
        starts.append(starts[-1] + len(people))
        boxes.append(np.asarray(s.boxes, dtype=np.float32)[people].reshape(-1, 4))
        ignored.append(unann[people] if unann.size else np.zeros(len(people), bool))
        positive.append(pos)
        role_boxes.append(rbox)
        has_role.append(hrole)
    cat = np.concatenate
    ign = cat(ignored) if ignored else np.zeros(0, bool)
    pos_all = cat(positive) if positive else np.zeros((0, n_a), bool)
    return _GroundTruth(
        index=index,
        image_ids=[s.image_id for s in samples],
        person_start=np.asarray(starts, dtype=np.int64),
        boxes=cat(boxes) if boxes else np.zeros((0, 4), np.float32),
        ignored=ign,
        positive=pos_all,
        role_boxes=cat(role_boxes) if role_boxes else np.zeros((0, n_r, 4), np.float32),
        has_role=cat(has_role) if has_role else np.zeros((0, n_r), bool),
        npos=(pos_all & ~ign[:, None]).sum(axis=0).astype(np.int64),
    )
