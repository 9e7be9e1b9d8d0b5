"""Issue 12, hostile input sizes and shapes: gzip and .mat bombs, huge JSON Lines lines and
nesting too deep for Python's parsers each give one clear error (a lowered limit keeps the
'bomb' files small)."""

from __future__ import annotations

import gzip
import json

import numpy as np
import pytest

from linkhoi.cli import main
from linkhoi.data.hico import read_hico_mat
from linkhoi.detections import DetectionError, FileDetections
from linkhoi.eval.triplets import TripletFileError, read_triplets
from linkhoi.io import InputError, load_json
from linkhoi.labels import LabelError, load
from linkhoi.labels.userfile import read_label_space_file
from linkhoi.train.config import ConfigError, load_config, parse_override

DEEP = "[" * 200_000


@pytest.fixture()
def one_mb_limit(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LINKHOI_MAX_INPUT_MB", "1")


def _ground_truth(tmp_path):
    """A one-image HICO-DET ground truth (PPDM json) the eval command accepts."""
    space = load("hico_det")
    hoi = space.hois[0]
    obj = space.object_ids[space.object_position(hoi.object)]
    rec = {"file_name": "a.jpg", "annotations": [{"bbox": [1, 1, 10, 10], "category_id": 1},
           {"bbox": [20, 20, 30, 30], "category_id": obj}],
           "hoi_annotation": [{"subject_id": 0, "object_id": 1, "category_id": hoi.verb_id}]}  # fmt: skip
    path = tmp_path / "gt.json"
    path.write_text(json.dumps([rec]))
    return path


def _limit_message(err: Exception, path) -> None:
    text = str(err)
    assert str(path) in text and "input limit of 1 MB" in text and "LINKHOI_MAX_INPUT_MB" in text


def test_item04_gzip_bomb_is_refused(tmp_path, one_mb_limit) -> None:
    # Valid JSON that inflates past the limit: today's reader parsed it whole.
    path = tmp_path / "dets.json.gz"
    with gzip.open(path, "wb") as fh:
        fh.write(b" " * (3 << 20) + b"[]")
    assert path.stat().st_size < 20_000
    with pytest.raises(InputError) as err:
        load_json(path)
    _limit_message(err.value, path)
    with pytest.raises(DetectionError) as err:
        FileDetections(path, load("hico_det"))
    _limit_message(err.value, path)
    with pytest.raises(TripletFileError) as err:
        list(read_triplets(path))
    _limit_message(err.value, path)


def test_item04_huge_jsonl_line_is_refused(tmp_path, one_mb_limit, capsys) -> None:
    path = tmp_path / "preds.jsonl.gz"
    with gzip.open(path, "wt") as fh:
        fh.write('{"format": "hoi-triplets", "version": 1}\n')
        fh.write('{"file_name": "a.jpg", "detections": []' + " " * (2 << 20) + "}\n")
    with pytest.raises(TripletFileError) as err:
        list(read_triplets(path))
    _limit_message(err.value, path)
    assert "line 2" in str(err.value)
    rc = main(["eval", "hico_det", "--annotations", str(_ground_truth(tmp_path)),
               "--predictions", str(path), "--output", str(tmp_path / "OUT.json")])  # fmt: skip
    err = capsys.readouterr().err
    assert rc == 1 and "input limit of 1 MB" in err and len(err.strip().splitlines()) == 1


def test_item04_mat_bomb_is_refused(tmp_path, one_mb_limit) -> None:
    import scipy.io

    path = tmp_path / "anno_bbox.mat"
    scipy.io.savemat(path, {"bbox_test": np.zeros((1 << 19,))}, do_compression=True)  # 4 MB
    assert path.stat().st_size < 100_000
    with pytest.raises(InputError) as err:
        read_hico_mat(path, "test")
    _limit_message(err.value, path)


def test_item04_limit_env_must_be_a_size(tmp_path, monkeypatch) -> None:
    monkeypatch.setenv("LINKHOI_MAX_INPUT_MB", "lots")
    (tmp_path / "x.json").write_text("[]")
    with pytest.raises(InputError, match="LINKHOI_MAX_INPUT_MB='lots'"):
        load_json(tmp_path / "x.json")
    monkeypatch.setenv("LINKHOI_MAX_INPUT_MB", "0.001")
    assert load_json(tmp_path / "x.json") == []  # a raised or lowered limit is honoured


def test_item05_deep_nesting_gives_one_error(tmp_path, capsys) -> None:
    deep_json = tmp_path / "deep.json"
    deep_json.write_text(DEEP)
    with pytest.raises(DetectionError, match="nested too deeply"):
        FileDetections(deep_json, load("hico_det"))
    with pytest.raises(TripletFileError, match="nested too deeply"):
        list(read_triplets(deep_json))
    lines = tmp_path / "deep.jsonl"
    lines.write_text('{"format": "hoi-triplets"}\n' + DEEP + "\n")
    with pytest.raises(TripletFileError, match="line 2 is nested too deeply"):
        list(read_triplets(lines))
    for suffix in (".json", ".yaml"):
        space = tmp_path / f"space{suffix}"
        space.write_text(DEEP)
        with pytest.raises(LabelError, match="nested too deeply"):
            read_label_space_file(space)
    config = tmp_path / "cfg.yaml"
    config.write_text("optim: " + DEEP)
    with pytest.raises(ConfigError, match="nested too deeply"):
        load_config(config)
    with pytest.raises(ConfigError, match="'optim.lr'.*nested too deeply"):
        parse_override("optim.lr=" + DEEP)
    # Through the command line: one line on stderr, exit 2, no RecursionError traceback.
    for ann, pred in ((deep_json, lines), (_ground_truth(tmp_path), lines)):
        rc = main(["eval", "hico_det", "--annotations", str(ann),
                   "--predictions", str(pred), "--output", str(tmp_path / "OUT.json")])  # fmt: skip
        err = capsys.readouterr().err
        assert rc == 1 and "nested too deeply" in err and "Traceback" not in err
        assert len(err.strip().splitlines()) == 1
    rc = main(["train", str(config)])
    err = capsys.readouterr().err
    assert rc == 2 and "nested too deeply" in err and len(err.strip().splitlines()) == 1


def _alias_bomb(levels: int = 9) -> str:
    """A 'billion laughs' YAML: each anchor is a list of nine references to the previous one,
    so the last expands to 9**levels values while the file stays tiny."""
    lines = ["a0: &a0 [" + ", ".join(["lol"] * 9) + "]"]
    lines += [f"a{k}: &a{k} [" + ", ".join([f"*a{k - 1}"] * 9) + "]" for k in range(1, levels)]
    return "\n".join(lines) + "\n"


def test_yaml_alias_bomb_is_refused(tmp_path) -> None:
    import yaml

    from linkhoi.yaml_input import expanded_size, safe_load

    # Counted by hand: the outer list, then three times the inner list and its two numbers.
    assert expanded_size(yaml.compose("[&a [1, 2], *a, *a]")) == 1 + 3 * 3
    legit = "base: &b {lr: 0.001, epochs: 2}\nteacher: *b\nstudent: {<<: *b, epochs: 3}\n"
    assert safe_load(legit) == yaml.safe_load(legit)
    assert safe_load("") is None
    bomb = _alias_bomb()
    assert len(bomb) < 500  # bytes
    with pytest.raises(yaml.YAMLError, match="aliases .* expand to more than 10,000,000 values"):
        safe_load(bomb)
    config = tmp_path / "bomb.yaml"
    config.write_text(bomb)
    with pytest.raises(ConfigError, match="bomb.yaml.*alias bomb"):
        load_config(config)
    with pytest.raises(LabelError, match="bomb.yaml.*alias bomb"):
        read_label_space_file(config)
    with pytest.raises(ConfigError, match="alias bomb"):
        parse_override("optim.lr=" + bomb.replace("\n", ", ").join("{}"))
