"""-ing forms of verbs for text prompts ("a photo of a person riding a horse").

Order of precedence: the label space's own `verb_ing` mapping; SWiG-HOI names (already
-ing forms) as they are; the hand-checked table labels/data/verb_ing.csv (all HICO-DET and
V-COCO verbs); a rule-based fallback for anything else.
"""

from __future__ import annotations

import csv
import functools
import re
from typing import TYPE_CHECKING

from linkhoi.labels.packaged import data_dir

if TYPE_CHECKING:
    from linkhoi.labels.labelspace import LabelSpace

_VOWELS = set("aeiou")


@functools.lru_cache(maxsize=1)
def ing_table() -> dict[str, str]:
    """The packaged verb -> -ing form table (HICO-DET and V-COCO verbs)."""
    with data_dir().joinpath("verb_ing.csv").open("r", encoding="utf-8", newline="") as fh:
        return {r["verb"]: r["ing"] for r in csv.DictReader(fh)}


def _ing_word(word: str) -> str:
    """-ing form of a single English verb by the usual spelling rules."""
    w = word.lower()
    if len(w) <= 1:
        return w + "ing"
    if w.endswith("ie"):  # tie -> tying, lie -> lying
        return w[:-2] + "ying"
    if w.endswith(("ee", "ye", "oe")) or w in {"be", "singe", "dye"}:  # see -> seeing, hoe
        return w + "ing"
    if w.endswith("e"):  # ride -> riding, dribble -> dribbling
        return w[:-1] + "ing"
    # Consonant doubling for one-syllable consonant-vowel-consonant verbs: run, sit, swim.
    c = w.replace("qu", "qw")  # the u of "qu" is a consonant sound: quit -> quitting
    syllables = len(re.findall(r"[aeiou]+", c))
    if (
        syllables == 1
        and len(c) >= 3
        and c[-1] not in _VOWELS | set("wxy")
        and c[-2] in _VOWELS
        and c[-3] not in _VOWELS
    ):
        return w + w[-1] + "ing"
    return w + "ing"


def rule_ing(verb: str) -> str:
    """Rule-based -ing form; multi-word verbs ("hop_on") inflect the first word only."""
    words = [w for w in re.split(r"[\s_]+", verb.strip()) if w]
    if not words:
        raise ValueError(f"empty verb {verb!r}")
    return " ".join([_ing_word(words[0]), *words[1:]])


def ing_form(verb: str, label_space: LabelSpace | None = None) -> str:
    """-ing form of `verb` for prompts, e.g. "hop_on" -> "hopping on", "lie_on" -> "lying on".

    A label space's `verb_ing` mapping wins; SWiG-HOI verbs are returned unchanged.
    """
    if label_space is not None:
        if verb in label_space.verb_ing:
            return label_space.verb_ing[verb]
        if label_space.extra.get("verbs_are_ing_forms"):
            return verb
    table = ing_table()
    if verb in table:
        return table[verb]
    key = re.sub(r"\s+", "_", verb.strip().lower())
    if key in table:
        return table[key]
    return rule_ing(verb)
