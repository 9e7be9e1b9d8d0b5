"""The PPDM reader's array path (linkhoi.data.hico_fast) gives the per-record reader's samples,
and hands every case it does not handle back to it."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path

import numpy as np
import pytest

from linkhoi.data import hico, read_hico_json
from linkhoi.data.hico_fast import ppdm_samples
from linkhoi.labels import load

HICO = load("hico_det")


def _records(n_images: int = 40, seed: int = 0) -> list[dict]:
    """PPDM-layout records with random boxes and valid HICO-DET pairs (some images empty)."""
    rng = np.random.default_rng(seed)
    verb_ids, coco = HICO.verb_ids, HICO.object_ids
    hoi_v, hoi_o = HICO.hoi_verb_positions(), HICO.hoi_object_positions()
    records = []
    for i in range(n_images):
        anns, hois = [], []
        for k, c in enumerate(rng.choice(len(HICO.hois), rng.integers(0, 4))):
            x, y = rng.integers(1, 300, 2).tolist()
            w, h = (rng.random(2) * 100).round(1).tolist()
            anns += [{"bbox": [x, y, x + w, y + h], "category_id": 1},
                     {"bbox": [x, y + 1.5, x + 2 * w, y + h + 1.5], "category_id": int(coco[hoi_o[c]])}]  # fmt: skip
            hois.append({"subject_id": 2 * k, "object_id": 2 * k + 1,
                         "category_id": int(verb_ids[hoi_v[c]])})  # fmt: skip
        records.append({"file_name": f"HICO_test2015_{i + 1:08d}.jpg", "annotations": anns,
                        "hoi_annotation": hois})  # fmt: skip
    return records


def _slow(path: Path, monkeypatch: pytest.MonkeyPatch, **kw: object) -> list:
    """The per-record reader alone (the array path switched off)."""
    with monkeypatch.context() as m:
        m.setattr(hico, "ppdm_samples", lambda *a, **k: None)
        return read_hico_json(path, **kw)


def _fast(records: list[dict], path: Path = Path("x.json")) -> list | None:
    space, root, human = hico._setup(HICO, None)
    return ppdm_samples(records, path, space, root, human, lambda r, n: (0, 0))


def test_array_path_equals_the_per_record_reader(tmp_path: Path, monkeypatch) -> None:
    records = _records()
    assert sum(len(r["hoi_annotation"]) for r in records) > 20
    path = tmp_path / "test_hico.json"
    path.write_text(json.dumps(records))
    fast = _fast(records)
    assert fast is not None and len(fast) == len(records)
    assert fast == _slow(path, monkeypatch)
    assert read_hico_json(path) == fast
    # a stated hoi_category_id that agrees, sizes from the record: still the array path
    image = next(i for i, s in enumerate(fast) if s.pairs)
    records[image]["hoi_annotation"][0]["hoi_category_id"] = HICO.hois[fast[image].pairs[0].hoi].id
    for r in records:
        r.update(width=640, height=480)
    path.write_text(json.dumps(records))
    space, root, human = hico._setup(HICO, None)
    sized = ppdm_samples(records, path, space, root, human,
                         lambda r, n: hico._size(r, n, root, path))  # fmt: skip
    assert sized is not None and (sized[0].width, sized[0].height) == (640, 480)
    assert read_hico_json(path) == _slow(path, monkeypatch) == sized


def _changed(records: list[dict], image: int, key: str, index: int, field: str, value) -> list:
    out = copy.deepcopy(records)
    out[image][key][index][field] = value
    return out


@pytest.mark.parametrize(
    ("key", "field", "value"),
    [
        ("annotations", "category_id", "1\n"),  # a string id (the per-record reader takes it)
        ("annotations", "category_id", 1.0),
        ("annotations", "category_id", True),
        ("annotations", "bbox", [1, 2, 3]),
        ("annotations", "bbox", [1, True, 3, 4]),
        ("annotations", "bbox", [5, 2, 3, 4]),  # inverted: the per-record reader's error
        ("hoi_annotation", "subject_id", "0"),
        ("hoi_annotation", "object_id", 99),
        ("hoi_annotation", "category_id", "invalid"),  # a verb not valid for the object
        ("hoi_annotation", "hoi_category_id", None),
        ("hoi_annotation", "hoi_category_id", 601),
    ],
)
def test_anything_unusual_goes_the_per_record_way(tmp_path, monkeypatch, key, field, value) -> None:
    records = _records()
    image = next(i for i, r in enumerate(records) if r["hoi_annotation"])
    if value == "invalid":
        obj = records[image]["annotations"][1]["category_id"]
        table = HICO.hoi_table(None)[:, HICO.object_position_by_id(obj)]
        value = int(HICO.verb_ids[int(np.flatnonzero(table < 0)[0])])
    bad = _changed(records, image, key, 0, field, value)
    assert _fast(records) is not None
    assert _fast(bad) is None
    path = tmp_path / "test_hico.json"
    path.write_text(json.dumps(bad))
    for on_invalid in ("error", "warn"):
        with warnings.catch_warnings(record=True) as slow_warned:
            warnings.simplefilter("always")
            try:
                expected: object = _slow(path, monkeypatch, on_invalid=on_invalid)
            except ValueError as err:  # the per-record reader's error
                expected = f"{type(err).__name__}: {err}"
        with warnings.catch_warnings(record=True) as warned:
            warnings.simplefilter("always")
            try:
                got: object = read_hico_json(path, on_invalid=on_invalid)
            except ValueError as err:
                got = f"{type(err).__name__}: {err}"
        assert got == expected
        assert [str(w.message) for w in warned] == [str(w.message) for w in slow_warned]


def test_records_that_are_not_plain_lists_of_objects() -> None:
    records = _records(5)
    assert _fast([*records, "not a record"]) is None
    assert _fast([{**records[0], "annotations": {"bbox": [1, 1, 2, 2]}}]) is None
    assert _fast([{**records[0], "file_name": 7}]) is None
    no_pairs = [{"file_name": "a.jpg"}, {"file_name": "b.jpg", "annotations": None}]
    got = _fast(no_pairs)
    assert got is not None and [s.boxes.shape for s in got] == [(0, 4), (0, 4)]


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"annotations": {}}, "'annotations': expected a list of objects, got dict"),
        ({"hoi_annotation": 0}, "'hoi_annotation': expected a list of objects, got int"),
        ({"width": -5, "height": 10}, "'width': expected a positive integer, got -5"),
    ],
)
def test_wrong_containers_and_negative_sizes_are_errors(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, change: dict, message: str
) -> None:
    """Found by the fuzz harness: both readers took {} or 0 for "no annotations" and a negative
    width as a size. Now one error from either path (the array path hands them over)."""
    from linkhoi.data.sample import DatasetError

    records = _records(6)
    records[2].update(change)
    path = tmp_path / "test_hico.json"
    path.write_text(json.dumps(records))
    if "width" not in change:
        assert _fast(records) is None  # the array path does not decide these
    for read in (lambda: read_hico_json(path), lambda: _slow(path, monkeypatch)):
        with pytest.raises(DatasetError) as err:
            read()
        assert message in str(err.value) and "HICO_test2015_00000003.jpg" in str(err.value)
    # missing or null still means "none"
    records[2].update({"annotations": None, "hoi_annotation": None, "width": 0, "height": 0})
    path.write_text(json.dumps(records))
    assert len(read_hico_json(path)) == 6
