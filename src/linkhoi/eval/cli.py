"""``linkhoi eval``: score a triplet file with an official protocol.

    linkhoi eval hico_det --annotations FILE --predictions FILE --output OUT.json
                          [--setting default|known_object] [--split full|rf_uc|nf_uc|uo|uv]
                          [--image-labels anno.mat]
    linkhoi eval vcoco    --annotations vcoco_test.json --instances INSTANCES.json
                          --ids vcoco_test.ids [--sort-ids] --predictions FILE --output OUT.json
    linkhoi eval swig_hoi --annotations swig_test.json --predictions FILE --output OUT.json
    common: [--strict] [--plot] [--export-official DIR]

Writes OUT.json (fractions in [0, 1]) and ``OUT.per_class_ap.csv`` beside it, prints a table
in percent with the protocol used; ``--plot`` adds ``OUT.per_class_ap.png``. The files are
written as one set (all renamed into place at the end, under a lock on the folder).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Iterable
from pathlib import Path
from typing import Any

from tqdm import tqdm

from linkhoi.eval.base import EvalError, EvalResult, Evaluator
from linkhoi.eval.triplets import TripletFileError, gc_paused, read_triplets

BENCHMARK_SPACE = {"hico_det": "hico_det", "vcoco": "vcoco", "swig_hoi": "swig_hoi"}


def _common(p: argparse.ArgumentParser) -> None:
    p.add_argument("--predictions", required=True, type=Path,
                   help="triplet file (.json / .jsonl, optionally .gz), or an official format: "
                   "V-COCO .pkl, SWiG-HOI json, folder of detections_XX.mat")  # fmt: skip
    p.add_argument("--output", required=True, type=Path, help="OUT.json to write")
    p.add_argument("--strict", action="store_true",
                   help="predictions on images not in the annotations (or not a class) are an "
                   "error instead of being ignored and counted")  # fmt: skip
    p.add_argument("--plot", action="store_true", help="also write OUT.per_class_ap.png")
    p.add_argument("--diagnose", action="store_true",
                   help="why the mAP is what it is: TIDE-style error types and the mAP gained "
                   "by fixing each (hico_det)")  # fmt: skip
    p.add_argument("--export-official", type=Path, metavar="DIR",
                   help="write the predictions in the official evaluator's input format")  # fmt: skip


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Sub-commands ``hico_det``, ``vcoco`` and ``swig_hoi``."""
    sub = parser.add_subparsers(dest="benchmark", metavar="BENCHMARK", required=True)
    h = sub.add_parser("hico_det", help="HICO-DET (official MATLAB protocol)")
    h.add_argument("--annotations", required=True, type=Path,
                   help="test_hico.json (PPDM), instances_test2015.json or anno_bbox.mat")  # fmt: skip
    h.add_argument("--setting", choices=("default", "known_object"), default="default")
    h.add_argument("--split", choices=("full", "rf_uc", "nf_uc", "uo", "uv"), default="full")
    h.add_argument("--image-labels", type=Path, metavar="anno.mat",
                   help="official anno.mat: Known-Object images from its image-level labels")  # fmt: skip
    _common(h)
    v = sub.add_parser("vcoco", help="V-COCO (official vsrl_eval protocol)")
    v.add_argument("--annotations", required=True, type=Path, help="vcoco_test.json")
    v.add_argument("--instances", required=True, type=Path, help="COCO instances json")
    v.add_argument("--ids", required=True, type=Path, help="vcoco_test.ids")
    v.add_argument("--sort-ids", action="store_true",
                   help="sort an unsorted ids file first (trainval/all splits; test is sorted)")  # fmt: skip
    _common(v)
    s = sub.add_parser("swig_hoi", help="SWiG-HOI (official protocol)")
    s.add_argument("--annotations", required=True, type=Path, help="swig_test json")
    _common(s)


def build_evaluator(args: argparse.Namespace) -> Evaluator:
    """The benchmark's evaluator built from the annotation files named in ``args``."""
    if args.benchmark == "hico_det":
        from linkhoi.eval.hico import HICOEvaluator

        if args.image_labels is not None and args.setting != "known_object":
            raise EvalError("--image-labels is only used with --setting known_object")
        return HICOEvaluator.from_files(
            args.annotations, setting=args.setting, split=args.split,
            image_labels=args.image_labels, strict=args.strict,
        )  # fmt: skip
    if args.benchmark == "vcoco":
        from linkhoi.eval.vcoco import VCOCOEvaluator

        return VCOCOEvaluator.from_files(
            args.annotations, args.instances, args.ids, strict=args.strict, sort_ids=args.sort_ids
        )
    from linkhoi.eval.swig import SWIGEvaluator

    return SWIGEvaluator.from_files(args.annotations, strict=args.strict)


def evaluate_file(
    evaluator: Evaluator, predictions: Path, benchmark: str, annotations: Any = None
) -> EvalResult:
    """Stream a predictions file through ``evaluator`` and evaluate it.

    Detections are validated once, by :func:`linkhoi.eval.resolve.resolve_triplets` inside
    the evaluator. A triplet file is decoded by msgspec into structs
    (:mod:`linkhoi.eval.fastread`); a file that decoder refuses is read again by the stdlib
    reader, which names the problem. Never a silent 0 (:mod:`linkhoi.eval.checks`): a ground
    truth without pairs, or predictions of which no image is a ground-truth image, raise
    EvalError; names that match only by base name are matched and noted; many unmatched
    images give warnings.

    Args:
        annotations: the annotation file(s), named (and inspected) when they hold no pair.
    """
    from linkhoi.eval.checks import check_ground_truth
    from linkhoi.eval.fastread import FastPathUnavailable

    check_ground_truth(benchmark, evaluator.num_gt_images, evaluator.num_gt_pairs, annotations)
    try:
        return _evaluate_stream(evaluator, predictions, benchmark, fast=True)
    except (FastPathUnavailable, TripletFileError, EvalError):
        # start again with the reader that words every error with the file's own values
        # (the structs hold [10.0, 10.0, 1.0, 1.0] where the file says [10, 10, 1, 1])
        return _evaluate_stream(evaluator, predictions, benchmark, fast=False)


def _evaluate_stream(
    evaluator: Evaluator, predictions: Path, benchmark: str, fast: bool
) -> EvalResult:
    from linkhoi.eval.batch import BatchRefused, batches
    from linkhoi.eval.checks import ImageKeys, check_matches, guess_names_benchmark

    evaluator.reset()
    evaluator.predictions_source = str(predictions)  # type: ignore[attr-defined]
    header: dict = {}
    want = BENCHMARK_SPACE[benchmark]
    keys = ImageKeys(evaluator.image_keys())
    images = _open_predictions(evaluator, predictions, benchmark, header, fast)
    # the fast reader's images go in batches (one set of arrays per batch); a batch that
    # fails is processed again image by image, which raises the first error in file order
    groups = batches(images) if fast else ([item] for item in images)
    try:
        with gc_paused():  # no reference cycles here; avoids full collections over 1M dicts
            bar = tqdm(desc="evaluate", unit="img", disable=None)
            for group in groups:
                space = header.get("label_space")
                if isinstance(space, str) and space and space != want:
                    raise TripletFileError(
                        f"{predictions}: field 'label_space' is {space!r}, but {benchmark} "
                        f"needs {want!r} predictions"
                    )
                if len(group) > 1:
                    mark = keys.mark()
                    try:
                        evaluator.process_batch([(keys.match(n), d) for n, d in group])
                        bar.update(len(group))
                        continue
                    except (TripletFileError, EvalError, BatchRefused):
                        keys.rewind(mark)
                for name, dets in group:
                    try:
                        evaluator.process(keys.match(name), dets)
                    except (TripletFileError, EvalError):
                        # another benchmark's predictions fail on their classes: say so
                        guess = guess_names_benchmark([name]) if not keys.matched else None
                        if guess not in (None, benchmark):
                            check_matches(keys, benchmark, predictions, 0, [])
                        raise
                    bar.update(1)
            bar.close()
            gt_names = list(evaluator.image_keys())[:1]
            notes, warnings = check_matches(
                keys, benchmark, predictions, evaluator.num_gt_images, gt_names
            )
            result = evaluator.evaluate()
            result.notes[:0] = notes
            result.warnings.extend(warnings)
            return result
    except (TripletFileError, EvalError) as err:
        msg = str(err)  # evaluators may not know the file name: put it in
        for anon in ("<predictions>", "<memory>"):
            if msg.startswith(anon):
                raise type(err)(str(predictions) + msg[len(anon) :]) from None
        raise


def _open_predictions(
    evaluator: Evaluator, predictions: Path, benchmark: str, header: dict, fast: bool = False
) -> Iterable[tuple[str, list]]:
    """The images of a triplet file (``fast``: msgspec structs) or of an official-format file
    (ids as image keys)."""
    from linkhoi.eval.official_in import FORMATS, detect_format, read_official

    fmt = detect_format(predictions)
    if fmt == "triplets" and fast:
        from linkhoi.eval.fastread import label_names, read_triplets_fast

        names = label_names(getattr(evaluator, "label_space", None))
        return read_triplets_fast(predictions, header=header, names=names)
    if fmt == "triplets":
        return read_triplets(predictions, check_detections=False, header=header)
    space, what = FORMATS[fmt]
    if space != BENCHMARK_SPACE[benchmark]:
        raise TripletFileError(
            f"{predictions}: this is {what}, for `linkhoi eval {space}`, not {benchmark}"
        )
    header["label_space"] = space
    return read_official(predictions, fmt, getattr(evaluator, "file_names", None))[1]


def _class_names(evaluator: Any, result: EvalResult) -> dict[str, str]:
    ls = getattr(evaluator, "label_space", None)
    if ls is None:
        return {}
    by_id = {str(h.id): h.name for h in ls.hois}
    return {k: by_id[k] for k in result.per_class if k in by_id}


def _ranked_classes(evaluator: Any, result: EvalResult) -> dict[str, float]:
    """The per-class APs the chart's best / worst lists rank: classes with ground truth only
    (a class without it has AP 0 by rule, which says nothing about the model)."""
    npos, ls = getattr(evaluator, "npos", None), getattr(evaluator, "label_space", None)
    if npos is None or ls is None or len(npos) != len(ls.hois):
        return result.per_class
    has_gt = {str(h.id) for h, n in zip(ls.hois, npos, strict=True) if n > 0}
    return {k: v for k, v in result.per_class.items() if k in has_gt}


def output_path(out: Path, what: str) -> Path:
    """The file ``OUT.<what>`` beside ``--output OUT.json`` (``.json`` dropped), so that two
    evaluations into one folder never overwrite each other's CSV or charts."""
    stem = out.name[:-5] if out.name.lower().endswith(".json") else out.name
    return out.with_name(f"{stem}.{what}")


def run(args: argparse.Namespace) -> int:
    """Evaluate, write OUT.json + OUT.per_class_ap.csv (+ png, + official export), print a
    table."""
    from linkhoi.eval.report import format_table, plot_per_class, write_per_class_csv
    from linkhoi.io import check_output_dir, check_output_file
    from linkhoi.outputs import output_lock, output_set

    out: Path = args.output
    csv_out, png_out = output_path(out, "per_class_ap.csv"), output_path(out, "per_class_ap.png")
    try:
        # Every output is checked first: a bad one must not leave the others half done.
        check_output_file(out)
        check_output_file(csv_out)
        if args.plot:
            check_output_file(png_out)
        if args.plot and args.diagnose:
            check_output_file(output_path(out, "diagnosis.png"))
        if args.export_official is not None:
            check_output_dir(args.export_official)
        evaluator = build_evaluator(args)
        if args.diagnose and not hasattr(evaluator, "diagnose"):
            raise EvalError(f"--diagnose is available for hico_det, not {args.benchmark}")
        gt_files = [args.annotations, getattr(args, "instances", None)]
        result = evaluate_file(evaluator, args.predictions, args.benchmark, gt_files)
        if args.diagnose:
            result.summary["diagnosis"] = evaluator.diagnose()  # type: ignore[attr-defined]
        names = _class_names(evaluator, result)
        ranked = _ranked_classes(evaluator, result)
        # One set: OUT.json, the csv (and the charts) are renamed into place together, once
        # all are written, while no other linkhoi run writes this folder (another eval waits).
        with output_lock(out.parent, wait=True), output_set() as put:
            result.to_json(put(out))
            write_per_class_csv(put(csv_out), result.per_class, names)
            if args.plot:
                _, best, worst = plot_per_class(put(png_out, ".png"), result, names, ranked)
                if args.diagnose:
                    from linkhoi.eval.diagnose import plot_diagnosis

                    diag_png = output_path(out, "diagnosis.png")
                    diag = result.summary["diagnosis"]
                    plot_diagnosis(put(diag_png, ".png"), diag, args.benchmark)
            if args.export_official is not None:
                written = evaluator.export_official(args.export_official)  # type: ignore[attr-defined]
    except (TripletFileError, EvalError, ValueError, OSError) as err:
        # DatasetError and LabelError are ValueErrors with a message naming file/image/field
        print(f"linkhoi eval: error: {err}", file=sys.stderr)
        return 1
    print(format_table(result))
    if args.diagnose:
        from linkhoi.eval.diagnose import format_diagnosis

        print(format_diagnosis(result.summary["diagnosis"]))
    for line in result.warnings:
        print(f"linkhoi eval: warning: {line}", file=sys.stderr)
    print(f"wrote {out} and {csv_out}")
    if args.plot:
        print(f"wrote {png_out} (best: {best}; worst: {worst})")
        if args.diagnose:
            print(f"wrote {diag_png}")
    if args.export_official is not None:
        where = written[0].parent if isinstance(written, list) and written else written
        print(f"wrote the official-format predictions to {where}")
    return 0
