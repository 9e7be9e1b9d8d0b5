"""Outputs of detect and eval: one run per folder, written as one set, streamed, a clean stop
and a full disk reported in one line (issue 12 items 8, 13, 14, 15, 21)."""

from __future__ import annotations

import errno
import json
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from linkhoi.cli import main
from linkhoi.detections import write_detections
from linkhoi.eval.triplets import read_header, read_triplets, write_triplets
from linkhoi.io import atomic_path
from linkhoi.labels import load
from linkhoi.model import LinkConfig, create_model
from linkhoi.model.checkpoint import model_payload, save_checkpoint
from linkhoi.outputs import output_lock

SPACE = load("synthetic")
NAMES = [f"img{i}.png" for i in range(6)]


@pytest.fixture(scope="module")
def images(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("outputs")
    torch.manual_seed(0)
    model = create_model(
        LinkConfig(backbone="tiny", d_model=16, d_pair=16, d_latent=16, num_heads=2, pe_dims=8),
        "synthetic",
        device="cpu",
    )
    ckpt = save_checkpoint(root / "tiny.pt", model_payload(model))
    folder = root / "imgs"
    folder.mkdir()
    rng = np.random.default_rng(0)
    records = []
    for name in NAMES:
        Image.fromarray(rng.integers(0, 255, (60, 80, 3), dtype=np.uint8)).save(folder / name)
        boxes = [([5, 5, 30, 55], "person"), ([40, 10, 75, 50], "horse")]
        records.append(
            {
                "file_name": name,
                "detections": [{"box": b, "label": lab, "score": 0.9} for b, lab in boxes],
            }
        )
    dets = write_detections(root / "dets.json", records, SPACE)
    return {"ckpt": ckpt, "imgs": folder, "dets": dets}


def detect(images: dict, out: Path, *extra: str) -> int:
    return main(
        ["detect", str(images["imgs"]), "--checkpoint", str(images["ckpt"]), "--detections",
         str(images["dets"]), "--out", str(out), "--batch-size", "1", "--device", "cpu", *extra]
    )  # fmt: skip


def signal_after_drawing(monkeypatch, count: int, times: int, seen: list[str]) -> None:
    """Send SIGINT ``times`` times once ``count`` images are drawn."""
    import linkhoi.infer.draw as draw

    real = draw.draw_triplets

    def drawing(path, triplets, out_path, *args):
        seen.append(Path(out_path).name)
        result = real(path, triplets, out_path, *args)
        if len(seen) == count:
            for _ in range(times):
                os.kill(os.getpid(), signal.SIGINT)
        return result

    monkeypatch.setattr(draw, "draw_triplets", drawing)


@pytest.mark.parametrize("times", [1, 2])
def test_item13_detect_ctrl_c_writes_partial_triplets(
    images, tmp_path: Path, monkeypatch, capsys, times: int
) -> None:
    seen: list[str] = []
    signal_after_drawing(monkeypatch, 2, times, seen)
    before = signal.getsignal(signal.SIGINT)
    out = tmp_path / "out"
    assert detect(images, out) == 130
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("linkhoi")]
    assert len(err) == 1 and "stopped by Ctrl-C after 2 of 6 images" in err[0]
    assert read_header(out / "triplets.json")["partial"] is True
    assert [name for name, _ in read_triplets(out / "triplets.json")] == NAMES[:2]
    assert signal.getsignal(signal.SIGINT) == before
    assert sorted(p.name for p in out.iterdir()) == ["images", "triplets.json"]  # no lock, no tmp


def test_item21_detect_streams_the_triplet_file(images, tmp_path: Path, monkeypatch) -> None:
    import linkhoi.infer.draw as draw

    out, real, written = tmp_path / "out", draw.draw_triplets, []

    def drawing(path, triplets, out_path, *args):
        # The image drawn now is written after it; the images before it are already on disk.
        (tmp,) = out.glob(".triplets.json.*.tmp")
        written.append(tmp.read_text().count('"file_name"'))
        return real(path, triplets, out_path, *args)

    monkeypatch.setattr(draw, "draw_triplets", drawing)
    assert detect(images, out) == 0
    assert written == list(range(6))
    assert "partial" not in read_header(out / "triplets.json")
    assert len(list(read_triplets(out / "triplets.json"))) == 6


@pytest.mark.parametrize("suffix", [".json", ".jsonl.gz"])
def test_item13_partial_header_in_every_format(tmp_path: Path, suffix: str) -> None:
    recs = [(n, [{"human_box": [0, 0, 1, 1], "object_box": None, "verb": "look", "score": 0.5}])
            for n in NAMES[:3]]  # fmt: skip
    path = write_triplets(tmp_path / f"t{suffix}", iter(recs), "synthetic", partial=lambda: True)
    assert read_header(path) == {
        "format": "hoi-triplets", "version": 1, "label_space": "synthetic", "partial": True,
    }  # fmt: skip
    assert [n for n, _ in read_triplets(path)] == NAMES[:3]


def test_item08_detect_refuses_a_folder_in_use(images, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    with output_lock(out, command="linkhoi detect other/"):
        assert detect(images, out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "in use by another linkhoi run" in err[0]
    assert "linkhoi detect other/" in err[0]
    assert not out.exists()  # the holder created it; nothing else was written


def _eval_files(tmp_path: Path) -> tuple[Path, Path]:
    rec = {"file_name": "a.jpg", "annotations": [{"bbox": [1, 1, 10, 10], "category_id": 1},
           {"bbox": [20, 20, 30, 30], "category_id": 2}],
           "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": 88}]}  # fmt: skip
    ann = tmp_path / "test_hico.json"
    ann.write_text(json.dumps([rec]))
    det = {"human_box": [1, 1, 10, 10], "object_box": [20, 20, 30, 30], "verb": "ride",
           "object": "bicycle", "score": 0.9}  # fmt: skip
    pred = write_triplets(tmp_path / "p.json", [("a.jpg", [det])], "hico_det")
    return ann, pred


def evaluate(ann: Path, pred: Path, out: Path) -> int:
    return main(["eval", "hico_det", "--annotations", str(ann), "--predictions", str(pred),
                 "--output", str(out)])  # fmt: skip


def test_item08_eval_writes_its_files_as_one_set(tmp_path: Path, monkeypatch, capsys) -> None:
    import linkhoi.eval.report as report

    ann, pred = _eval_files(tmp_path)
    out = tmp_path / "res" / "OUT.json"
    assert evaluate(ann, pred, out) == 0
    first = out.read_text(), (out.parent / "OUT.per_class_ap.csv").read_text()
    capsys.readouterr()

    def failing_csv(path, *args):
        raise OSError(errno.EIO, "input/output error")

    monkeypatch.setattr(report, "write_per_class_csv", failing_csv)
    assert evaluate(ann, pred, out) == 1
    assert (out.read_text(), (out.parent / "OUT.per_class_ap.csv").read_text()) == first
    assert sorted(p.name for p in out.parent.iterdir()) == ["OUT.json", "OUT.per_class_ap.csv"]
    monkeypatch.undo()
    # Another run holding the folder: eval waits for it instead of mixing files with it.
    held = threading.Event()

    def other_run() -> None:
        with output_lock(out.parent):
            held.set()
            time.sleep(0.5)

    thread = threading.Thread(target=other_run)
    thread.start()
    held.wait()
    start = time.perf_counter()
    assert evaluate(ann, pred, out) == 0
    assert time.perf_counter() - start >= 0.4
    thread.join()


def _full_disk(monkeypatch, module, name: str, path_arg: int = 0) -> None:
    def full(*args, **kwargs):
        with atomic_path(args[path_arg]) as tmp:
            tmp.write_bytes(b"partial")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(module, name, full)


def test_item14_full_disk_detect_and_eval_one_line(
    images, tmp_path: Path, monkeypatch, capsys
) -> None:
    import linkhoi.eval.report as report
    import linkhoi.infer.draw as draw

    out = tmp_path / "det"
    _full_disk(monkeypatch, draw, "_save_atomic", path_arg=1)
    assert detect(images, out) == 2
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("linkhoi")]
    assert (
        len(err) == 1 and "no space left" in err[0] and str(out / "images" / "img0.png") in err[0]
    )
    assert not (out / "triplets.json").exists() and not list(out.rglob("*.tmp"))
    ann, pred = _eval_files(tmp_path)
    res = tmp_path / "res" / "OUT.json"
    _full_disk(monkeypatch, report, "atomic_write_text")
    assert evaluate(ann, pred, res) == 1
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("linkhoi")]
    assert len(err) == 1 and "no space left" in err[0]
    assert repr(str(res.parent / "OUT.per_class_ap.csv")) in err[0]  # the target, not a temporary
    assert not res.exists() and not list(res.parent.glob("*.tmp"))


def test_item15_unreadable_world_marker_regenerates(tmp_path: Path, monkeypatch) -> None:
    import linkhoi.demo as demo
    import linkhoi.io

    monkeypatch.setattr(demo, "cache_root", lambda: tmp_path)
    made: list[Path] = []

    def fake_world(root, **kwargs):
        made.append(Path(root))
        Path(root).mkdir(parents=True)

    monkeypatch.setattr(demo, "generate_world", fake_world)
    renamed: list[str] = []
    real_replace = linkhoi.io.os.replace
    monkeypatch.setattr(
        linkhoi.io.os, "replace", lambda a, b: renamed.append(Path(b).name) or real_replace(a, b)
    )
    world = demo._world("quick", 0, progress=False)
    marker = world.root / "world.json"
    assert made == [world.root] and renamed == ["world.json"]  # written by an atomic rename
    marker.write_text(marker.read_text()[:7])  # a marker cut short
    assert demo._world("quick", 0, progress=False).root == world.root
    assert len(made) == 2 and json.loads(marker.read_text())["seed"] == 0
    demo._world("quick", 0, progress=False)
    assert len(made) == 2  # a good marker: the cached world is used
