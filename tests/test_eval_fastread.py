"""The msgspec reader gives the stdlib reader's arrays, and hands anything unusual back to it."""

from __future__ import annotations

import json

import numpy as np
import pytest

from linkhoi.eval.fastread import Detection, FastPathUnavailable, read_triplets_fast
from linkhoi.eval.resolve import resolve_triplets
from linkhoi.eval.triplets import TripletFileError, read_triplets, write_triplets
from linkhoi.labels import load

HICO = load("hico_det")


def _images() -> list[tuple[str, list[dict]]]:
    rng = np.random.default_rng(0)
    images = []
    for i in range(30):
        dets = []
        for j in range(int(rng.integers(0, 6))):
            h = HICO.hois[int(rng.integers(len(HICO.hois)))]
            x, y = (float(v) for v in rng.integers(1, 300, 2))
            d = {"human_box": [x, y, x + 20, y + 30], "object_box": [y, x, y + 5.5, x + 9],
                 "score": float(rng.random())}  # fmt: skip
            style = j % 4  # names, ids, hoi_id, and a null object box with a verb only
            if style == 0:
                d.update(verb=h.verb, object=h.object)
            elif style == 1:
                d.update(
                    verb_id=h.verb_id, object_id=HICO.object_ids[HICO.object_position(h.object)]
                )
            elif style == 2:
                d.update(hoi_id=h.id, object=h.object)
            else:
                d.update(verb=h.verb, object_box=None)
            dets.append(d)
        images.append((f"img_{i}.jpg", dets))
    return images


@pytest.mark.parametrize("suffix", [".json", ".jsonl.gz"])
def test_fast_reader_gives_the_stdlib_readers_arrays(tmp_path, suffix) -> None:
    path = write_triplets(tmp_path / f"p{suffix}", _images(), "hico_det")
    header: dict = {}
    fast = list(read_triplets_fast(path, header=header))
    slow = list(read_triplets(path))
    assert header["label_space"] == "hico_det"
    assert [n for n, _ in fast] == [n for n, _ in slow]
    assert any(d and isinstance(d[0], Detection) for _, d in fast)
    for (name, a), (_, b) in zip(fast, slow, strict=True):
        x, y = resolve_triplets(a, HICO, "p", name), resolve_triplets(b, HICO, "p", name)
        for k in x.__slots__:
            np.testing.assert_array_equal(getattr(x, k), getattr(y, k))


@pytest.mark.parametrize("detection", [
    '{"human_box": [1, 1, 2, 2], "object_box": null, "verb": "ride", "score": NaN}',
    '{"human_box": [1, 1, 2], "object_box": null, "verb": "ride", "score": 0.5}',
    '{"human_box": [1, 1, 2, 2], "verb": "ride", "score": 0.5}',
    '{"human_box": [1, 1, 2, 2], "object_box": null, "verb": "ride", "score": "0.5"}',
])  # fmt: skip
def test_anything_unusual_goes_back_to_the_stdlib_reader(tmp_path, detection) -> None:
    path = tmp_path / "p.json"
    path.write_text('{"images": [{"file_name": "a.jpg", "detections": [' + detection + "]}]}")
    with pytest.raises(FastPathUnavailable):
        list(read_triplets_fast(path))
    dup = tmp_path / "dup.json"
    dup.write_text(json.dumps([{"file_name": "a", "detections": []}] * 2))
    with pytest.raises(FastPathUnavailable):
        list(read_triplets_fast(dup))


def test_checks_on_structs_word_errors_as_for_dicts() -> None:
    d = {"human_box": [5.0, 1, 2, 2], "object_box": None, "verb": "ride", "score": 0.5}
    s = Detection(human_box=(5.0, 1, 2, 2), object_box=None, verb="ride", score=0.5)
    for dets in ([d], [s]):
        with pytest.raises(
            TripletFileError, match=r"p: image 'a', detection 0: field 'human_box' has x2 < x1"
        ):
            resolve_triplets(dets, HICO, "p", "a")
    with pytest.raises(TripletFileError, match="unknown verb name 'levitate'"):
        resolve_triplets([Detection((1.0, 1, 2, 2), None, 0.5, verb="levitate")], HICO, "p", "a")
