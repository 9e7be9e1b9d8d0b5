"""`linkhoi demo --quick` end to end: world, tiny CLIP, teacher, student, evaluation, report."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linkhoi.cli import main

KEYS = {"full", "rare", "non_rare", "seen", "unseen"}


@pytest.mark.slow
def test_demo_quick_end_to_end(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "demo"
    assert main(["demo", "--quick", "--no-progress", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert "teacher  gt" in printed and "chance   noisy" in printed

    for name in ("report.md", "metrics.json", "per_class_ap.png", "teacher.pt", "student.pt"):
        assert (out / name).is_file(), name
    assert len(list((out / "predictions").glob("*.png"))) == 4
    assert len(list((out / "data" / "images").glob("test_*.png"))) == 24
    for name in ("test.json", "detections_good.json", "detections_noisy.json"):
        assert (out / "data" / name).is_file(), name
    assert "not a HICO-DET result" in (out / "report.md").read_text()

    metrics = json.loads((out / "metrics.json").read_text())
    assert set(metrics) == {"teacher", "student", "chance"}
    for by_source in metrics.values():
        assert set(by_source) == {"gt", "good", "noisy"}
        for m in by_source.values():
            assert set(m) == KEYS and all(0.0 <= v <= 1.0 for v in m.values())
    # Chance (uniform random scores on the same candidate pairs) is high on this small world:
    # with ground-truth boxes most candidate pairs of a class are positives (~0.42 mAP for the
    # quick world, seed 0). The trained teacher must beat it clearly (measured: ~0.61).
    chance, teacher = metrics["chance"]["gt"]["full"], metrics["teacher"]["gt"]["full"]
    assert 0.3 < chance < 0.55
    assert teacher >= chance + 0.10
    assert metrics["student"]["gt"]["full"] > chance  # the distilled student learned too
    # noisy boxes hurt: the teacher on the noisy detector is below the teacher on gt boxes
    assert metrics["teacher"]["noisy"]["full"] < teacher

    from linkhoi.model.checkpoint import load_model

    for name in ("teacher", "student"):
        model = load_model(out / f"{name}.pt", device="cpu")
        assert model.label_space.name == "synthetic"


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
