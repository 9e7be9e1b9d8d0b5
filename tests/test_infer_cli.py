"""`linkhoi detect` on a folder of generated images (every awkward kind) with a tiny checkpoint."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image
from safetensors.torch import save_file

from linkhoi.data import load_image
from linkhoi.detections import CallableDetector, FileDetections, write_detections
from linkhoi.eval.triplets import read_header, read_triplets
from linkhoi.infer import Predictor, cli
from linkhoi.infer.sources import expand_images
from linkhoi.labels import load
from linkhoi.model import LinkConfig, create_model
from linkhoi.model.checkpoint import load_model, model_payload, save_checkpoint

SMALL = dict(backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16)
SPACE = load("synthetic")
ORIENTATION = 0x0112


def _noise(h: int, w: int, seed: int) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 255, (h, w, 3), dtype=np.uint8)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory) -> dict:
    root = tmp_path_factory.mktemp("detect")
    torch.manual_seed(0)
    model = create_model(LinkConfig(**SMALL), "synthetic", device="cpu")
    ckpt = save_checkpoint(root / "tiny.pt", model_payload(model))
    imgs = root / "imgs"
    (imgs / "sub").mkdir(parents=True)
    Image.fromarray(_noise(80, 100, 0)).save(imgs / "rgb.png")
    Image.fromarray(_noise(80, 100, 1)[..., 0]).save(imgs / "gray.png")
    Image.fromarray(np.dstack([_noise(80, 100, 2), np.full((80, 100), 128, np.uint8)])).save(
        imgs / "rgba.png"
    )
    Image.fromarray((np.arange(8000).reshape(80, 100) * 8).astype(np.uint16)).save(
        imgs / "sub" / "deep.png"
    )
    # Stored 100 wide x 60 high, EXIF orientation 6 (rotate 90): upright it is 60 x 100.
    exif = Image.Exif()
    exif[ORIENTATION] = 6
    Image.fromarray(_noise(60, 100, 3)).save(imgs / "rotated.jpg", exif=exif.tobytes())
    Image.fromarray(_noise(80, 100, 4)).save(imgs / "empty.png")
    (imgs / "broken.png").write_bytes(b"this is not a png")
    dets = {
        "rgb.png": (
            [[5, 5, 40, 75], [50, 10, 95, 60], [20, 50, 60, 78]],
            ["person", "horse", "cup"],
        ),
        "gray.png": ([[5, 5, 40, 75], [50, 10, 95, 60]], ["person", "bicycle"]),
        "rgba.png": ([[5, 5, 40, 75], [45, 5, 90, 70]], ["person", "person"]),
        "sub/deep.png": ([[5, 5, 40, 75], [50, 10, 95, 60]], ["person", "umbrella"]),
        # y up to 95 only fits the upright (rotated) 60 x 100 frame.
        "rotated.jpg": ([[2, 5, 30, 95], [32, 40, 58, 90]], ["person", "ball"]),
        "empty.png": ([], []),
    }
    records = [
        {
            "file_name": name,
            "detections": [
                {"box": b, "label": lab, "score": 0.9 - 0.1 * i}
                for i, (b, lab) in enumerate(zip(boxes, labels, strict=True))
            ],
        }
        for name, (boxes, labels) in dets.items()
    ]
    det_file = write_detections(root / "dets.json", records, SPACE)
    return {"root": root, "ckpt": ckpt, "imgs": imgs, "dets": det_file, "boxes": dets}


def _run(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    cli.add_arguments(parser)
    return cli.run(parser.parse_args(argv))


def test_detect_folder_writes_triplets_and_pngs(world: dict, tmp_path: Path, capsys) -> None:
    out = tmp_path / "out"
    argv = [
        str(world["imgs"]),
        "--checkpoint",
        str(world["ckpt"]),
        "--detections",
        str(world["dets"]),
    ]
    assert _run([*argv, "--out", str(out), "--top-k", "10", "--device", "cpu"]) == 0
    err = capsys.readouterr().err
    assert "broken.png" in err and "skipped 1 unreadable" in err
    assert "1 image(s) have no record" in err  # broken.png has none in the detection file
    assert read_header(out / "triplets.json")["label_space"] == "synthetic"
    got = dict(read_triplets(out / "triplets.json"))
    assert sorted(got) == sorted(world["boxes"])  # every readable image, the broken one skipped
    assert got["empty.png"] == []
    for name, (boxes, labels) in world["boxes"].items():
        if name == "empty.png":
            continue
        assert 0 < len(got[name]) <= 10
        humans = [b for b, lab in zip(boxes, labels, strict=True) if lab == "person"]
        assert all(t["human_box"] in humans and t["object_box"] in boxes for t in got[name])
    # Boxes stay in the upright frame of the EXIF-rotated JPEG.
    assert max(t["human_box"][3] for t in got["rotated.jpg"]) == 95
    drawn = sorted(p.relative_to(out / "images").as_posix() for p in out.rglob("*.png"))
    assert drawn == sorted(str(Path(n).with_suffix(".png")) for n in world["boxes"])
    rotated = Image.open(out / "images" / "rotated.png")
    assert rotated.height > rotated.width  # drawn upright

    # The Python API gives the same triplets.
    predictor = Predictor.from_checkpoint(world["ckpt"], device="cpu")
    source = FileDetections(world["dets"], predictor.label_space)
    for name, triplets in got.items():
        image = load_image(world["imgs"] / name)
        api = predictor(image, source.detect(name, image), top_k=10)
        assert [(t["hoi_id"], t["human_box"], t["object_box"]) for t in api] == [
            (t["hoi_id"], t["human_box"], t["object_box"]) for t in triplets
        ]
        np.testing.assert_allclose(
            [t["score"] for t in api], [t["score"] for t in triplets], rtol=1e-4
        )


def test_open_vocabulary_and_no_draw(world: dict, tmp_path: Path) -> None:
    out = tmp_path / "ov"
    argv = [str(world["imgs"] / "rgb.png"), "--checkpoint", str(world["ckpt"])]
    argv += ["--detections", str(world["dets"]), "--out", str(out), "--no-draw"]
    assert _run([*argv, "--verbs", "ride,feed", "--hois", "hold cup; look horse"]) == 0
    got = dict(read_triplets(out / "triplets.json"))
    assert not (out / "images").exists()
    verbs = {(t["verb"], t["object"]) for t in got["rgb.png"]}
    assert {v for v, _ in verbs} == {"ride", "feed", "hold", "look"}
    assert {o for v, o in verbs if v == "hold"} == {"cup"}
    assert {o for v, o in verbs if v == "look"} == {"horse"}


def test_bad_inputs_give_one_clear_error(world: dict, tmp_path: Path, capsys) -> None:
    base = [str(world["imgs"]), "--checkpoint", str(world["ckpt"]), "--out", str(tmp_path / "x")]
    assert _run(base) == 2
    assert "--detector KIND:ARG" in capsys.readouterr().err
    other = write_detections(
        tmp_path / "hico.json", [{"file_name": "rgb.png", "detections": []}], "hico_det"
    )
    assert _run([*base, "--detections", str(other)]) == 2
    err = capsys.readouterr().err
    assert "hico.json', field 'label_space': is 'hico_det'" in err
    assert "read for label space 'synthetic'" in err
    assert _run([*base, "--detector", "torchvision:fcos_resnet50_fpn"]) == 2
    assert "--detector-weights" in capsys.readouterr().err
    assert (
        _run([str(tmp_path / "nothing*.png"), *base[1:], "--detections", str(world["dets"])]) == 2
    )
    assert "no file matches" in capsys.readouterr().err
    assert (
        _run([*base[:1], "--checkpoint", str(world["dets"]), "--detections", str(world["dets"])])
        == 2
    )
    assert "not a loadable linkhoi checkpoint" in capsys.readouterr().err
    # Options and outputs are checked before the model is loaded.
    (tmp_path / "a_file").write_text("x")
    dets = ["--detections", str(world["dets"])]
    for extra, message in [
        (["--out", str(tmp_path / "a_file")], "as the output folder: it is a file"),
        (["--top-k", "0"], "--top-k 0: must be >= 1"),
        (["--threshold", "nan"], "--threshold nan: must be in [0, 1]"),
        (["--max-draw", "-1"], "--max-draw -1: must be >= 0"),
        (["--verbs", ",,,"], "--verbs: no class given"),
        (["--clip-weights", str(tmp_path / "nope.safetensors")], "no such file or folder"),
        (["--device", "bogus"], "unknown device 'bogus'"),
    ]:
        args = [*base[:3], "--out", str(tmp_path / "y"), *dets, *extra]
        assert _run(args) == 2, extra
        assert message in capsys.readouterr().err


def test_coco_results_with_categories(world: dict, tmp_path: Path) -> None:
    results = [
        {"image_id": 7, "category_id": 1, "bbox": [5, 5, 35, 70], "score": 0.9},
        {"image_id": 7, "category_id": 19, "bbox": [50, 10, 45, 50], "score": 0.8},
    ]
    coco = {
        "images": [{"id": 7, "file_name": "rgb.png", "width": 100, "height": 80}],
        "categories": [{"id": 1, "name": "person"}, {"id": 19, "name": "horse"}],
    }
    (tmp_path / "res.json").write_text(json.dumps(results))
    (tmp_path / "coco.json").write_text(json.dumps(coco))
    argv = [str(world["imgs"] / "rgb.png"), "--checkpoint", str(world["ckpt"]), "--no-draw"]
    argv += [
        "--detections",
        str(tmp_path / "res.json"),
        "--categories",
        str(tmp_path / "coco.json"),
    ]
    assert _run([*argv, "--out", str(tmp_path / "o")]) == 0
    got = dict(read_triplets(tmp_path / "o" / "triplets.json"))["rgb.png"]
    # One human and one horse: the pair is (person, horse) with horse classes only.
    assert {tuple(t["object_box"]) for t in got} == {(50, 10, 95, 60)}
    assert {t["object"] for t in got} == {"horse"}


def test_clip_weights_and_unknown_labels(world: dict, tmp_path: Path, capsys) -> None:
    # A checkpoint without its backbone needs --clip-weights (checked by hash).
    model = load_model(world["ckpt"], device="cpu")
    weights = tmp_path / "clip.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.clip.state_dict().items()}, weights)
    m = create_model(model.config, "synthetic", clip_weights=weights, device="cpu")
    lean = save_checkpoint(tmp_path / "lean.pt", model_payload(m, include_backbone=False))
    argv = [str(world["imgs"] / "rgb.png"), "--checkpoint", str(lean), "--no-draw"]
    argv += ["--detections", str(world["dets"]), "--out", str(tmp_path / "o")]
    assert _run(argv) == 2
    assert "clip_weights" in capsys.readouterr().err
    assert _run([*argv, "--clip-weights", str(weights)]) == 0
    assert len(dict(read_triplets(tmp_path / "o" / "triplets.json"))["rgb.png"]) > 0
    # A detection file (no label-space header) naming objects the checkpoint lacks.
    rec = {
        "file_name": "rgb.png",
        "detections": [{"box": [1, 1, 9, 9], "label": "dining_table", "score": 1}],
    }
    (tmp_path / "hico_like.json").write_text(json.dumps([rec]))
    argv = [str(world["imgs"] / "rgb.png"), "--checkpoint", str(world["ckpt"]), "--no-draw"]
    assert _run([*argv, "--detections", str(tmp_path / "hico_like.json")]) == 2
    err = capsys.readouterr().err
    assert "hico_like.json" in err and "rgb.png" in err and "dining_table" in err


def test_png_names() -> None:
    names = cli.png_names(["a/b.jpg", "x.jpg", "x.png", "y.tif"])
    assert names == {
        "a/b.jpg": "a/b.png",
        "x.jpg": "x.jpg.png",
        "x.png": "x.png.png",
        "y.tif": "y.png",
    }


def test_expand_images(world: dict) -> None:
    imgs = world["imgs"]
    names = [n for _, n in expand_images([str(imgs)])]
    assert names == sorted(names) and "sub/deep.png" in names and "broken.png" in names
    assert [n for _, n in expand_images([str(imgs / "*.jpg")])] == ["rotated.jpg"]
    assert [n for _, n in expand_images([str(imgs / "rgb.png"), str(imgs / "rgb.png")])] == [
        "rgb.png"
    ]


def test_callable_detector_through_predict_many(world: dict) -> None:
    predictor = Predictor.from_checkpoint(world["ckpt"], device="cpu")
    fn = CallableDetector(
        lambda im: ([[5, 5, 40, 75], [50, 10, 95, 60]], ["person", "cup"], [0.9, 0.8]), SPACE
    )
    paths = [world["imgs"] / "rgb.png", world["imgs"] / "broken.png", world["imgs"] / "gray.png"]
    errors: list = []
    got = list(
        predictor.predict_many(paths, fn, batch_size=2, on_error=lambda p, e: errors.append(p))
    )
    assert [n for n, _ in got] == [str(paths[0]), str(paths[2])]
    assert errors == [paths[1]]
    assert all(t["object"] in ("cup", "person") for _, ts in got for t in ts)


def test_records_found_by_relative_or_base_name(world: dict, tmp_path: Path, capsys) -> None:
    # Two different images named x.png in two folders; the file keys a record "x.png" only.
    imgs = tmp_path / "imgs"
    for i, sub in enumerate(("a", "b")):
        (imgs / sub).mkdir(parents=True)
        Image.fromarray(_noise(80, 100, 10 + i)).save(imgs / sub / "x.png")
    person, horse = ([5, 5, 40, 75], "person", 0.9), ([50, 10, 95, 60], "horse", 0.8)
    rec = [{"box": b, "label": lab, "score": sc} for b, lab, sc in (person, horse)]
    dets = write_detections(
        tmp_path / "flat.json", [{"file_name": "x.png", "detections": rec}], SPACE
    )
    base = ["--checkpoint", str(world["ckpt"]), "--detections", str(dets), "--no-draw"]
    assert _run([str(imgs), *base, "--out", str(tmp_path / "both")]) == 2
    err = capsys.readouterr().err
    assert "'a/x.png' and 'b/x.png' both fall back to record 'x.png'" in err
    # One of them alone: the base-name fallback is unambiguous and gives it the record.
    assert _run([str(imgs / "a"), *base, "--out", str(tmp_path / "one")]) == 0
    assert "no record" not in capsys.readouterr().err
    triplets = dict(read_triplets(tmp_path / "one" / "triplets.json"))
    assert len(triplets["x.png"]) > 0
