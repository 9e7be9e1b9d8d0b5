"""`linkhoi detect IMAGES... --checkpoint CKPT`: HOI triplets and annotated PNGs for images.

Writes ``<out>/triplets.json`` (all images, streamed as they finish:
`linkhoi.eval.triplets.write_triplets`) and ``<out>/images/<file_name stem>.png`` per image
(unless ``--no-draw``). Unreadable files are skipped with a warning and listed at the end; an
image without detections gets an empty list. One run at a time per output folder
(`linkhoi.outputs.output_lock`); Ctrl-C (or SIGTERM) writes the finished images' triplets,
marked ``"partial": true`` in the header, and exits with 130.
"""

from __future__ import annotations

import argparse
import signal
import sys
from pathlib import Path
from typing import Any

from tqdm import tqdm

DEFAULT_OUT = "linkhoi_detect"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of `linkhoi detect`."""
    parser.add_argument("images", nargs="+", help="image files, folders or glob patterns")
    parser.add_argument("--checkpoint", required=True, help="a linkhoi checkpoint (.pt)")
    box = parser.add_argument_group("boxes (give one)")
    box.add_argument(
        "--detector",
        help="KIND:ARG: torchvision:NAME (with --detector-weights), hf:DIR (a transformers "
        "folder), ... (docs/inference.md)",
    )
    box.add_argument("--detector-weights", help="state dict file of a torchvision:NAME model")
    box.add_argument(
        "--folder-labels",
        choices=("positions", "ids"),
        default=None,
        help="folder:DIR with integer labels: 0-based object positions (default) or object ids",
    )
    box.add_argument(
        "--detection-cache",
        help="folder caching a detector's output per image (keyed by weights and image)",
    )
    box.add_argument(
        "--objects", help='open-vocabulary detectors: the object names to find, "giraffe, cup"'
    )
    box.add_argument("--detections", help="detection file (linkhoi json or COCO results)")
    box.add_argument(
        "--categories", help="with COCO results: the COCO-style json mapping image ids to names"
    )
    parser.add_argument("--out", default=DEFAULT_OUT, help=f"output folder (default {DEFAULT_OUT})")
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="triplets kept per image (default: the model's, 100)",
    )
    parser.add_argument("--threshold", type=float, default=0.0, help="keep scores above this")
    parser.add_argument("--verbs", help='open vocabulary: "ride,feed" (any object)')
    parser.add_argument("--hois", help='open vocabulary: "ride horse; feed giraffe"')
    parser.add_argument("--clip-weights", help="CLIP weights when the checkpoint lacks them")
    parser.add_argument(
        "--text-weights", help="weights of model.text_backbone when the checkpoint lacks them"
    )
    parser.add_argument(
        "--tokenizer",
        help="folder of the text tower's tokenizer files (tokenizer.json, ...) when the one "
        "recorded in the checkpoint moved (open_clip SigLIP models, hf:DIR folders)",
    )
    parser.add_argument("--no-draw", action="store_true", help="write no annotated images")
    parser.add_argument("--max-draw", type=int, default=20, help="triplets drawn per image")
    parser.add_argument("--batch-size", type=int, default=8, help="images per forward pass")
    parser.add_argument("--device", default=None, help="cpu, cuda, cuda:1 (default: auto)")


def parse_hois(text: str) -> list[tuple[str, str]]:
    """``"ride horse; feed giraffe"`` (or ``ride:horse``) -> [("ride", "horse"), ...]; the
    last word is the object, so multi-word verbs work ("sit on chair")."""
    from linkhoi.infer.predictor import InferenceError

    pairs = []
    for item in (part.strip() for part in text.split(";")):
        if not item:
            continue
        verb, sep, obj = item.partition(":")
        if not sep:
            verb, _, obj = item.rpartition(" ")
        if not verb.strip() or not obj.strip():
            raise InferenceError(f"--hois item {item!r}: write 'verb object', e.g. 'ride horse'")
        pairs.append((verb.strip(), obj.strip()))
    return pairs


def png_names(names: list[str]) -> dict[str, str]:
    """Annotated image name per file name: the suffix becomes .png ("a/b.jpg" -> "a/b.png");
    names that would collide ("x.jpg" and "x.png") keep their suffix ("x.jpg.png")."""
    plain = {n: str(Path(n).with_suffix(".png")) for n in names}
    counts: dict[str, int] = {}
    for target in plain.values():
        counts[target] = counts.get(target, 0) + 1
    return {n: t if counts[t] == 1 else f"{n}.png" for n, t in plain.items()}


def run(args: argparse.Namespace) -> int:
    """Run detection; 0 on success, 2 on bad input (one message on stderr)."""
    from linkhoi.data import ImageError
    from linkhoi.detections import DetectionError
    from linkhoi.labels import LabelError
    from linkhoi.model.checkpoint import CheckpointError

    try:
        return _run(args)
    except (CheckpointError, DetectionError, ImageError, LabelError, ValueError) as err:
        print(f"linkhoi detect: error: {err}", file=sys.stderr)
        return 2


def _run(args: argparse.Namespace) -> int:
    from linkhoi.devices import resolve_device
    from linkhoi.infer.predictor import InferenceError, Predictor
    from linkhoi.infer.sources import IMAGE_SUFFIXES, expand_images, make_detector
    from linkhoi.io import check_output_dir, check_output_file
    from linkhoi.model.text import parse_prompt_list
    from linkhoi.outputs import output_lock
    from linkhoi.paths import refuse_symlink
    from linkhoi.stopping import StopSignals

    if (args.detector is None) == (args.detections is None):
        make_detector(None, args.detector, None, args.detections)  # raises the clear message
    check_output_dir(args.out)
    check_output_file(Path(args.out) / "triplets.json")
    if not args.no_draw:  # drawings must land inside OUT, not in a link's target
        refuse_symlink(Path(args.out) / "images", "annotated images")
    resolve_device(args.device)
    if args.top_k is not None and args.top_k < 1:
        raise InferenceError(f"--top-k {args.top_k}: must be >= 1")
    if not 0.0 <= args.threshold <= 1.0:  # also refuses nan
        raise InferenceError(f"--threshold {args.threshold}: must be in [0, 1]")
    if args.max_draw < 0:
        raise InferenceError(f"--max-draw {args.max_draw}: must be >= 0")
    paths = {
        "--clip-weights": args.clip_weights,
        "--text-weights": args.text_weights,
        "--tokenizer": args.tokenizer,
    }
    for flag, value in paths.items():
        if value is not None and not Path(value).exists():
            raise InferenceError(f"{flag} {value}: no such file or folder")
    images = expand_images(args.images)
    if not images:  # before the checkpoint is loaded: nothing to do is said at once
        raise InferenceError(
            f"no image files in {', '.join(args.images)} (folders are searched for "
            f"{', '.join(sorted(IMAGE_SUFFIXES))})"
        )
    verbs = parse_prompt_list(args.verbs) if args.verbs is not None else None
    hois = parse_hois(args.hois) if args.hois is not None else None
    for flag, given in (("--verbs", verbs), ("--hois", hois)):
        if given is not None and not given:
            raise InferenceError(f"{flag}: no class given")
    objects = parse_prompt_list(args.objects) if args.objects is not None else None
    if objects is not None and not objects:
        raise InferenceError("--objects: no object given")
    predictor = Predictor.from_checkpoint(
        args.checkpoint,
        clip_weights=args.clip_weights,
        device=args.device,
        text_weights=args.text_weights,
        tokenizer=args.tokenizer,
    )
    if verbs or hois:
        prompts = predictor.set_vocabulary(verbs, hois, objects)
        print(f"open vocabulary: {len(prompts)} classes, e.g. {prompts[0]!r}")
    detector = make_detector(  # new --objects are objects of the open vocabulary's space
        predictor.label_space if objects else predictor.base_label_space,
        args.detector,
        args.detector_weights,
        args.detections,
        device=args.device,
        categories=args.categories,
        batch_size=args.batch_size,
        label_kind=args.folder_labels,
        objects=objects,
        cache=args.detection_cache,
    )
    if args.detections is not None:
        _check_records(images, detector, args.detections)
    out = Path(args.out)
    with output_lock(out), StopSignals() as stop:
        return _detect(args, predictor, detector, images, out, stop)


def _detect(args, predictor, detector, images, out: Path, stop) -> int:
    """Stream the results: each image's triplets are written (and drawn) as they come, so
    memory stays flat; a stop signal ends the run with the finished images, marked partial."""
    from linkhoi.eval.triplets import write_triplets
    from linkhoi.infer.draw import draw_triplets
    from linkhoi.infer.predictor import InferenceError
    from linkhoi.paths import join_under
    from linkhoi.stopping import Interrupted

    skipped: list[tuple[Path, str]] = []
    by_name = {name: path for path, name in images}
    drawn = png_names([name for _, name in images])
    done = {"images": 0, "triplets": 0, "stopped": False}

    def on_error(path: Path, err: Exception) -> None:
        skipped.append((path, str(err)))
        tqdm.write(f"warning: skipping {err}")

    def results():
        stream = predictor.predict_many(
            [(p, n) for p, n in images],
            detector,
            batch_size=args.batch_size,
            top_k=args.top_k,
            threshold=args.threshold,
            on_error=on_error,
        )
        bar = tqdm(stream, total=len(images), desc="detect", unit="img")
        try:
            for name, triplets in bar:
                try:
                    if not args.no_draw:
                        target = join_under(out / "images", drawn[name], "annotated image")
                        draw_triplets(by_name[name], triplets, target, args.max_draw)
                except Interrupted:  # a second Ctrl-C while drawing: the triplets are done
                    stop.signal = stop.signal or signal.SIGINT
                done["images"] += 1
                done["triplets"] += len(triplets)
                yield name, triplets
                if stop.requested:
                    break
        except Interrupted:  # a second Ctrl-C: keep what is done all the same
            pass
        finally:
            bar.close()
        done["stopped"] = stop.requested
        if not done["images"] and not done["stopped"]:
            raise InferenceError(f"none of the {len(images)} inputs is a readable image")

    path = write_triplets(
        out / "triplets.json",
        results(),
        predictor.label_space.name,
        partial=lambda: bool(done["stopped"]),
    )
    n, total = done["images"], len(images)
    if done["stopped"]:
        print(
            f"linkhoi detect: stopped by {stop.name} after {n} of {total} images; wrote {path} "
            f'({n} images, {done["triplets"]} triplets, marked "partial": true)',
            file=sys.stderr,
        )
        return 130
    print(f"wrote {path} ({n} images, {done['triplets']} triplets)")
    if not args.no_draw:
        print(f"wrote {n} annotated images under {out / 'images'}")
    dropped = getattr(detector, "dropped", None)  # detectors with classes beyond the space
    if dropped:
        print(
            f"dropped {sum(dropped.values())} detection(s) of classes the label space lacks: "
            + ", ".join(f"{name} ({n})" for name, n in dropped.most_common(5)),
            file=sys.stderr,
        )
    if skipped:
        print(f"skipped {len(skipped)} unreadable file(s):", file=sys.stderr)
        for p, reason in skipped:
            print(f"  {p}: {reason}", file=sys.stderr)
    return 0


def _check_records(images: list[tuple[Path, str]], source: Any, file: str) -> None:
    """Warn about images without a record in the detection file; refuse two images that would
    read the same record through the base-name fallback (``a/x.png`` and ``b/x.png`` -> ``x.png``)."""
    from linkhoi.infer.predictor import InferenceError, detection_key

    keys = {name: detection_key(source, name) for _, name in images}
    missing = [n for n, k in keys.items() if k is None]
    if missing:
        print(
            f"warning: {len(missing)} image(s) have no record in {file} (e.g. {missing[0]!r}): "
            "they get no detections; records are found by the image's name relative to the "
            "folder given, or by its base name",
            file=sys.stderr,
        )
    by_base: dict[str, list[str]] = {}
    for name, key in keys.items():
        if key is not None and key != name:
            by_base.setdefault(key, []).append(name)
    shared = {k: v for k, v in by_base.items() if len(v) > 1}
    if shared:
        key, names = next(iter(shared.items()))
        raise InferenceError(
            f"detection file {file!r}: images {names[0]!r} and {names[1]!r} both fall back to "
            f"record {key!r} (their base name); name the records by the images' relative paths"
        )
