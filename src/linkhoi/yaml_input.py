"""YAML from users' files, without the alias bomb.

``yaml.safe_load`` runs no code, but a small file can still define aliases of aliases (the
"billion laughs"): nine anchors of nine references each expand to 9**9 values. PyYAML shares
the repeated objects, so loading is cheap; whatever walks the result afterwards (validation,
``json.dumps``, a deep copy) is not. `safe_load` counts the values the document expands to
before building it, in time linear in the file, and refuses a document past `MAX_VALUES`.
"""

from __future__ import annotations

from typing import Any

import yaml

MAX_VALUES = 10_000_000  # far beyond any config or label space; a bomb passes it at once


class YAMLExpansionError(yaml.YAMLError):
    """The document's aliases expand to more than `MAX_VALUES` values."""


def expanded_size(node: yaml.Node, limit: int = MAX_VALUES) -> int:
    """How many values ``node`` stands for once every alias is written out (each alias
    counted as often as it is used); stops counting past ``limit``."""
    memo: dict[int, int] = {}

    def size(n: yaml.Node) -> int:
        key = id(n)
        if key in memo:
            return memo[key]
        memo[key] = 1  # a recursive alias (a node inside itself) counts once
        total = 1
        if isinstance(n, yaml.SequenceNode):
            for child in n.value:
                total += size(child)
                if total > limit:
                    break
        elif isinstance(n, yaml.MappingNode):
            for k, v in n.value:
                total += size(k) + size(v)
                if total > limit:
                    break
        memo[key] = total
        return total

    return size(node)


def safe_load(text: str, limit: int = MAX_VALUES) -> Any:
    """``yaml.safe_load(text)``, refusing documents whose aliases expand past ``limit`` values.

    Raises:
        YAMLExpansionError: a ``yaml.YAMLError``, so callers' YAML error messages cover it.
    """
    loader = yaml.SafeLoader(text)
    try:
        node = loader.get_single_node()
        if node is None:
            return None
        if expanded_size(node, limit) > limit:
            raise YAMLExpansionError(
                f"its aliases (*name) expand to more than {limit:,} values (an alias bomb?); "
                "write the values out instead of repeating anchors of anchors"
            )
        return loader.construct_document(node)
    finally:
        loader.dispose()
