"""The reader dispatch: ``read_dataset(kind, **paths)`` (no torch needed)."""

from __future__ import annotations

from typing import Any

from linkhoi.data.sample import Sample

KINDS = ("hico_det", "vcoco", "swig_hoi", "generic")


def read_dataset(kind: str, **paths: Any) -> list[Sample]:
    """Dispatch to a reader by dataset kind.

    - ``hico_det``: ``path`` (json, instances json or anno_bbox.mat), optional ``split``,
      ``image_root``, ``label_space``, ``on_invalid``  -> :func:`linkhoi.data.hico.read_hico`
    - ``vcoco``: ``vcoco_json``, ``instances_json``, ``ids_file``, optional ``image_root``,
      ``label_space``, ``sort_ids`` -> :func:`linkhoi.data.vcoco.read_vcoco`
    - ``swig_hoi``: ``path``, optional ``image_root``, ``label_space``
    - ``generic``: ``path``, optional ``label_space``, ``image_root``
    """
    if kind == "hico_det":
        from linkhoi.data.hico import read_hico

        return read_hico(**paths)
    if kind == "vcoco":
        from linkhoi.data.vcoco import read_vcoco

        return read_vcoco(**paths)
    if kind == "swig_hoi":
        from linkhoi.data.swig import read_swig

        return read_swig(**paths)
    if kind == "generic":
        from linkhoi.data.generic import read_generic

        return read_generic(**paths)
    raise ValueError(f"unknown dataset kind {kind!r}; expected one of {KINDS}")
