"""`linkhoi demo --quick` end to end: world, the pretrained and the random VLM, teachers,
students, evaluation, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linkhoi.cli import main
from linkhoi.labels import load as load_space

SUBSETS = {"full", "rare", "non_rare", "seen", "unseen", "unseen_composition", "unseen_object",
           "unseen_verb"}  # fmt: skip
MODELS = [f"{v}_{s}.pt" for v in ("pretrained", "random") for s in ("teacher", "student")]


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--jobs", "2", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    # the two VLMs trained in processes of their own, each with its training log
    for name in ("pretrained", "random"):
        assert f"{name} teacher" in printed and f"{name} student" in printed
        assert "epoch 10/10" in (out / "runs" / f"{name}.log").read_text()
    assert "pretrained teacher  gt" in printed and "random     student  noisy" in printed
    assert "open vocabulary, 'point at'" in printed

    for name in ("report.md", "metrics.json", "per_class_ap.png", *MODELS):
        assert (out / name).is_file(), name
    assert len(list((out / "predictions").glob("*.png"))) == 4
    assert len(list((out / "data" / "images").glob("test_*.png"))) == 32
    for name in ("test.json", "detections_good.json", "test_open_vocabulary.json"):
        assert (out / "data" / name).is_file(), name
    assert "not a HICO-DET result" in (out / "report.md").read_text()
    # The classes the small test set holds no pair of are named (each is AP 0 in every mean),
    # checked against the test file itself.
    test = json.loads((out / "data" / "test.json").read_text())
    present = {(h["verb"], im["boxes"][h["object"]]["label"]) for im in test["images"]
               for h in im["hois"]}  # fmt: skip
    m_space = load_space("synthetic")
    absent = [f"{h.verb} {h.object}" for h in m_space.hois if (h.verb, h.object) not in present]
    assert absent  # 32 test images cannot hold all 32 classes
    assert f"Classes without a test pair: {', '.join(absent)}." in (out / "report.md").read_text()
    assert f"(AP 0 by the HICO-DET rule, in every mean): {', '.join(absent)}" in printed

    # the metrics.json shape other tools read (issue: all values are fractions)
    m = json.loads((out / "metrics.json").read_text())
    assert set(m) == {"chance", "vlm", "pretrained", "random", "open_vocabulary"}
    assert set(m["chance"]) == {"gt", "good", "noisy"}
    for vlm in ("pretrained", "random"):
        assert set(m[vlm]) == {"teacher", "student"}
        assert 0.0 <= m["vlm"][vlm]["image_map"] <= 1.0
        assert 0.0 <= m["open_vocabulary"][vlm] <= 1.0
        for by_source in m[vlm].values():
            assert set(by_source) == {"gt", "good", "noisy"}
            for sub in by_source.values():
                assert set(sub) == SUBSETS and all(0.0 <= v <= 1.0 for v in sub.values())
    assert m["open_vocabulary"]["verb"] == "point at"
    # The pretrained VLM knows more than the random one before any HOI training, and the
    # teachers learn far beyond chance (quick world, seed 0).
    assert m["vlm"]["pretrained"]["image_map"] > m["vlm"]["random"]["image_map"]
    chance = m["chance"]["gt"]["full"]
    assert chance < 0.2
    assert m["pretrained"]["teacher"]["gt"]["full"] >= chance + 0.15

    from linkhoi.model.checkpoint import load_model

    for name in MODELS:
        assert load_model(out / name, device="cpu").label_space.name == "synthetic"


def test_demo_out_must_be_a_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    target = tmp_path / "a_file"
    target.write_text("x")
    assert main(["demo", "--quick", "--out", str(target)]) == 2
    err = capsys.readouterr().err
    assert "a_file" in err and "it is a file" in err
    assert main(["demo", "--quick", "--out", str(target / "sub")]) == 2  # a file as a folder
    assert "is a file, not a folder" in capsys.readouterr().err
    assert main(["demo", "--quick", "--out", str(tmp_path / "o"), "--seed", "-1"]) == 2
    assert "--seed -1: must be >= 0" in capsys.readouterr().err
    assert main(["demo", "--quick", "--out", str(tmp_path / "o"), "--device", "bogus"]) == 2
    assert "unknown device 'bogus'" in capsys.readouterr().err
    assert not (tmp_path / "o").exists()  # refused before any work


def test_demo_cache_writes_hold_the_cache_lock(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Two demos sharing one cache: the world and the random VLM are written under an exclusive
    lock on the cache's demo folder, so a second demo waits instead of deleting a world that is
    being written. Checked by trying to take that lock from inside each writer."""
    from linkhoi import demo
    from linkhoi.io import OutputError
    from linkhoi.outputs import output_lock

    monkeypatch.setenv("LINKHOI_CACHE", str(tmp_path))
    folder = tmp_path / "demo"
    held: list[str] = []

    def locked(what: str) -> None:
        with pytest.raises(OutputError, match="in use by another linkhoi run"), output_lock(folder):
            pass
        held.append(what)

    def fake_generate(root: Path, **_: object) -> None:
        locked("world")
        (root / "images").mkdir(parents=True)

    monkeypatch.setattr(demo, "generate_world", fake_generate)
    monkeypatch.setattr(demo, "world_paths", lambda root: root)
    demo._world("quick", 0, progress=False)
    assert (folder / f"world-v{demo.WORLD_VERSION}-quick-seed0" / "world.json").is_file()
    demo._world("quick", 0, progress=False)  # cached: not generated again
    assert held == ["world"]

    import linkhoi.synthetic.pretrain as pretrain

    real_export = pretrain.export

    def export(model: object, weights: Path, config: Path) -> None:
        locked("random vlm")
        real_export(model, weights, config)

    monkeypatch.setattr(pretrain, "export", export)
    vlms = demo._vlms()
    assert held == ["world", "random vlm"]
    assert Path(vlms["random"]["weights"]).is_file()
    assert not (folder / ".linkhoi.lock").exists()  # released


def test_demo_jobs(monkeypatch: pytest.MonkeyPatch) -> None:
    """--jobs wins (clamped to the two VLMs); by default two pipelines at once on a CPU with
    two or more cores, one on a single core or on a GPU."""
    from types import SimpleNamespace

    from linkhoi import demo

    def jobs(cores: int, device: str = "cpu", given: int | None = None) -> int:
        monkeypatch.setattr(
            demo.os, "sched_getaffinity", lambda _: set(range(cores)), raising=False
        )
        return demo._jobs(SimpleNamespace(jobs=given, device=device))

    assert jobs(2) == 2 and jobs(16) == 2 and jobs(1) == 1
    assert jobs(1, given=2) == 2 and jobs(8, given=1) == 1 and jobs(8, given=5) == 2
    assert jobs(8, given=0) == 1


def test_demo_worker_failure_is_one_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    """A training process that fails (here: the random VLM's weights file is gone) ends the
    demo with one error line naming the VLM and the cause; the other process is stopped."""
    from linkhoi import demo

    real = demo._vlms

    def vlms() -> dict:
        v = real()
        v["random"] = {**v["random"], "weights": tmp_path / "gone.safetensors"}
        return v

    monkeypatch.setattr(demo, "_vlms", vlms)
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--jobs", "2", "--out", str(out)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1, err
    assert err[0].startswith("linkhoi demo: error: training the random VLM's models failed:")
    assert "gone.safetensors" in err[0]
    assert not (out / "random_teacher.pt").exists()


def test_demo_random_vlm_takes_the_shipped_input_size(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A shipped VLM of another input size (here 64 px) gets a random twin of that size, under a
    name of its own, and each VLM's image_map sees the scenes at its own size."""
    from linkhoi import demo, demo_report
    from linkhoi.synthetic import vlm
    from linkhoi.synthetic.pretrain import export

    ship = tmp_path / "ship"
    ship.mkdir()
    weights, config = ship / "v.safetensors", ship / "v.json"
    export(vlm.build_model(seed=3, image_size=64), weights, config)
    monkeypatch.setattr(vlm, "shipped_paths", lambda: (weights, config, ship / "p.json"))
    monkeypatch.setenv("LINKHOI_CACHE", str(tmp_path / "cache"))
    vlms = demo._vlms()
    random = Path(vlms["random"]["weights"])
    assert random.name == "synthetic-clip-random-seed0-64px.safetensors"
    assert json.loads(random.with_suffix(".json").read_text())["vision_cfg"]["image_size"] == 64
    assert vlm.load_vlm(random).visual.image_size == (64, 64)
    known = demo_report.vlm_knowledge(vlms, 8, 0)
    assert all(0.0 <= known[k]["image_map"] <= 1.0 for k in ("pretrained", "random"))
