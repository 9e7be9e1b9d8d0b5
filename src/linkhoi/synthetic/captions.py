"""Plain-English captions of synthetic scenes: the text side of the VLM's pretraining corpus.

A caption says what the people in an image do, in varied wording: several agents ("a person",
"someone"), -ing and present forms with synonyms, clauses in random order joined in several
ways, and sometimes the classifier's own prompt template ("a photo of a person riding a horse").
The objects of 15% of the phrases are vague ("an object"), which is how an open-vocabulary
query with no object ("a photo of a person pointing at an object") gets its meaning.

Captions come from the scene's truth (``synthetic_rules``), so they cover everything drawn: the
compositions held out of HOI training, the unseen object and verb, and the open verb ``point``.
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np

from linkhoi.data.synthetic_rules import is_near
from linkhoi.data.synthetic_scene import Scene

ING = {
    "ride": ["riding", "riding on"],
    "kick": ["kicking"],
    "hold": ["holding"],
    "sit_on": ["sitting on"],
    "carry": ["carrying", "lifting"],
    "look": ["looking at", "watching"],
    "throw": ["throwing"],
    "point": ["pointing at", "pointing to"],
}
PRESENT = {
    "ride": ["rides"],
    "kick": ["kicks"],
    "hold": ["holds"],
    "sit_on": ["sits on"],
    "carry": ["carries", "lifts"],
    "look": ["looks at", "watches"],
    "throw": ["throws"],
    "point": ["points at", "points to"],
}
AGENTS = ["a person", "someone", "a figure", "one person", "a player"]
IDLE = ["standing", "standing still", "doing nothing", "just standing"]
NEAR = ["next to", "beside", "near"]
VAGUE = 0.15  # P(an object is named "an object")
PROMPT = 0.25  # P(a single-interaction caption uses the classifier's prompt template)


def article(noun: str) -> str:
    return ("an " if noun[0] in "aeiou" else "a ") + noun


def _noun(scene: Scene, j: int, rng: np.random.Generator) -> str:
    if scene.labels[j] == "person":
        return str(rng.choice(["a person", "another person", "someone"]))
    if rng.uniform() < VAGUE:
        return "an object"
    return article(scene.labels[j])


def person_facts(scene: Scene, i: int) -> tuple[list[tuple[str, int]], list[int]]:
    """What person ``i`` does: (verb, entity) facts from the truth, and the entities near them
    that they do nothing with."""
    facts = [(v, j) for h, j, v in scene.truth if h == i]
    busy = {j for _, j in facts}
    near = [
        j
        for j in range(len(scene.labels))
        if j != i and j not in busy and is_near(scene.people[i], scene.boxes[i], scene.boxes[j])
    ]
    return facts, near


def person_phrase(scene: Scene, i: int, rng: np.random.Generator, tense: str = "ing") -> str:
    """One person's actions as a verb phrase ("riding a horse and holding a cup")."""
    facts, near = person_facts(scene, i)
    table = ING if tense == "ing" else PRESENT
    parts = [f"{rng.choice(table[v])} {_noun(scene, j, rng)}" for v, j in facts]
    rng.shuffle(parts)
    if not parts:
        idle = str(rng.choice(IDLE))
        base = idle if tense == "ing" else "stands" if idle.startswith("stand") else "does nothing"
        if near and rng.uniform() < 0.5:
            base += f" {rng.choice(NEAR)} {_noun(scene, int(rng.choice(near)), rng)}"
        return base
    return " and ".join(parts)


def single_caption(scene: Scene, i: int, rng: np.random.Generator) -> str:
    """A caption of person ``i`` alone (for a crop around them)."""
    facts, _ = person_facts(scene, i)
    if len(facts) == 1 and rng.uniform() < PROMPT:
        v, j = facts[0]
        obj = "a person" if scene.labels[j] == "person" else article(scene.labels[j])
        return f"a photo of a person {ING[v][0]} {obj}"
    if rng.uniform() < 0.5:
        return f"{rng.choice(AGENTS)} {person_phrase(scene, i, rng, 'present')}"
    return f"{rng.choice(AGENTS)} {person_phrase(scene, i, rng)}"


def scene_caption(scene: Scene, rng: np.random.Generator, fits: Callable[[str], bool]) -> str:
    """A caption of the whole scene; clauses are dropped (last first) until ``fits`` says the
    text fits the text encoder's context."""
    order = rng.permutation(len(scene.people)).tolist()
    tense = "ing" if rng.uniform() < 0.6 else "present"
    clauses = [f"{rng.choice(AGENTS)} {person_phrase(scene, i, rng, tense)}" for i in order]
    if tense == "ing":
        joins = [str(rng.choice([" and ", ", ", " next to ", " with "])) for _ in clauses[1:]]
    else:
        joins = [str(rng.choice(["; ", ". ", " and ", " while "])) for _ in clauses[1:]]
    prefixes = ["", "", "a photo of ", "an image of ", "a picture of "] if tense == "ing" else [""]
    prefix = str(rng.choice(prefixes))
    while clauses:
        text = (
            prefix + clauses[0] + "".join(j + c for j, c in zip(joins, clauses[1:], strict=False))
        )
        if fits(text):
            return text
        clauses.pop()
    return prefix + "people"


OBJECT_TEMPLATES = ["{}", "a photo of {}", "an image of {}", "there is {}", "{} in the picture",
                    "a picture of {}"]  # fmt: skip


def object_caption(label: str, rng: np.random.Generator) -> str:
    """A caption naming one object, for a crop centred on it ("a photo of a cup")."""
    return str(rng.choice(OBJECT_TEMPLATES)).format(article(label))


def image_classes(scene: Scene) -> set[tuple[str, str]]:
    """The (verb, object) interactions true somewhere in the image (image-level labels)."""
    return {(v, scene.labels[j]) for _, j, v in scene.truth}
