"""Error messages a new user meets (issue 14 item 6): each names the key or override at fault,
suggests only what a command can do, checks before slow work, and stays one short line."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from linkhoi.cli import main
from linkhoi.detections import DetectionError, FileDetections
from linkhoi.io import InputError, brief, load_json
from linkhoi.train.config import ConfigError, load_config

BIG = 10**400


def test_a_bad_override_is_blamed_on_the_override_not_the_packaged_file() -> None:
    with pytest.raises(ConfigError) as err:
        load_config("synthetic_teacher", ["optim.epochs=-1"])
    assert str(err.value).startswith("override 'optim.epochs=-1': optim.epochs is -1")
    assert "packaged config" not in str(err.value)
    with pytest.raises(ConfigError, match=r"^override 'data\.flip_prob=2'"):
        load_config("synthetic_teacher", ["data.flip_prob=2"])


def test_a_bad_value_in_the_file_is_blamed_on_the_file(tmp_path: Path) -> None:
    (tmp_path / "c.yaml").write_text("optim:\n  epochs: 0\n")
    with pytest.raises(ConfigError, match=r"c\.yaml: optim\.epochs is 0"):
        load_config(tmp_path / "c.yaml", ["optim.lr=1e-3"])  # another key overridden


def test_a_folder_as_annotation_file_names_the_key(tmp_path: Path, capsys) -> None:
    rc = main(["train", "synthetic_teacher", f"data.train.path={tmp_path}",
               f"--out={tmp_path / 'run'}", "runtime.progress=false"])  # fmt: skip
    err = capsys.readouterr().err.strip()
    assert rc == 2 and len(err.splitlines()) == 1
    assert f"data.train.path: '{tmp_path}' is a folder" in err
    assert "Errno" not in err


def test_zero_shot_subset_is_checked_before_the_model_is_built(monkeypatch, tmp_path) -> None:
    import linkhoi.model.link
    from linkhoi.train.trainer import Trainer

    def built(*args, **kwargs):
        raise AssertionError("the model (and its text embeddings) was built first")

    monkeypatch.setattr(linkhoi.model.link, "create_model", built)
    cfg = load_config(
        "synthetic_teacher", ["data.label_space=hico_det", f"runtime.out_dir={tmp_path / 'r'}"]
    )
    with pytest.raises(ConfigError, match=r"data\.zero_shot: 'unseen' is not a subset"):
        Trainer(cfg)


def test_brief_shortens_huge_values() -> None:
    assert brief(BIG) == "1000000000...000 (401 digits)"
    assert brief([1, BIG]) == "[1, 1000000000...000 (401 digits)]"
    assert brief(12) == "12" and brief("abc") == "'abc'"
    assert len(brief("x" * 1000)) == 80


def _detection_file(tmp_path: Path, **fields) -> Path:
    det = {"box": [1, 1, 5, 5], "label": "person", "score": 0.5, **fields}
    path = tmp_path / "d.json"
    path.write_text(json.dumps({"format": "linkhoi-detections", "version": 1,
                                "images": [{"file_name": "a.png", "detections": [det]}]}))  # fmt: skip
    return path


@pytest.mark.parametrize("fields", [{"score": BIG}, {"box": [1, 1, BIG, 5]}])
def test_huge_integers_in_a_detection_file_give_one_short_error(tmp_path, fields) -> None:
    with pytest.raises(DetectionError) as err:  # not an OverflowError
        FileDetections(_detection_file(tmp_path, **fields), "synthetic")
    assert "(401 digits)" in str(err.value)
    assert len(str(err.value).replace(str(tmp_path), "")) < 200


def test_huge_integers_in_annotations_and_triplets_give_one_short_error(tmp_path) -> None:
    from linkhoi.data import DatasetError, read_generic
    from linkhoi.eval.triplets import TripletFileError, read_triplets

    image = {"file_name": "a.png", "width": BIG, "height": 10, "boxes": [], "hois": []}
    ann = tmp_path / "a.json"
    ann.write_text(json.dumps({"format": "linkhoi-annotations", "version": 1,
                               "label_space": "synthetic", "images": [image]}))  # fmt: skip
    with pytest.raises(DatasetError) as err:
        read_generic(ann)
    assert "field 'width'" in str(err.value)
    assert len(str(err.value).replace(str(tmp_path), "")) < 200
    det = {"human_box": [1, 1, 5, 5], "object_box": None, "verb": "ride", "score": BIG}
    preds = tmp_path / "p.json"
    preds.write_text(json.dumps({"images": [{"file_name": "a.jpg", "detections": [det]}]}))
    with pytest.raises(TripletFileError) as err:
        list(read_triplets(preds))
    assert "field 'score' is 1000000000...000 (401 digits)" in str(err.value)
    assert len(str(err.value).replace(str(tmp_path), "")) < 200


def test_an_integer_beyond_json_digit_limit_names_the_file(tmp_path) -> None:
    path = tmp_path / "big.json"
    path.write_text('{"version": ' + "1" * 5000 + "}")
    with pytest.raises(InputError, match="big.json") as err:
        load_json(path)
    assert "4300 digits" in str(err.value)
