"""``linkhoi convert-preds``: an official-format predictions file to a triplet file.

    linkhoi convert-preds INPUT --output OUT.json [--annotations HICO_GT | --image-list FILE]

INPUT is a V-COCO ``vsrl_eval`` detection pickle, a SWiG-HOI official-evaluator json or a folder
of ho-rcnn ``detections_XX.mat`` files (:mod:`linkhoi.eval.official_in`). The folder's columns
follow its ``list_test.txt``, else ``--image-list`` (one name a line), else the image order of
the HICO-DET ``--annotations``. OUT is ``.json`` or ``.jsonl``, optionally ``.gz``.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from linkhoi.eval.official_in import FORMATS, detect_format, read_official


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """INPUT, ``--output`` and the image order of a ho-rcnn folder."""
    parser.add_argument("input", type=Path,
                        help="vsrl_eval .pkl, SWiG-HOI official json, or a detections_XX.mat folder")  # fmt: skip
    parser.add_argument("--output", required=True, type=Path, help="the triplet file to write")
    order = parser.add_mutually_exclusive_group()
    order.add_argument("--image-list", type=Path,
                       help="ho-rcnn folder: image names in column order, one a line")  # fmt: skip
    order.add_argument("--annotations", type=Path,
                       help="ho-rcnn folder: the HICO-DET annotations whose order the columns follow")  # fmt: skip


def run(args: argparse.Namespace) -> int:
    """Convert, write atomically, print what was written; exit 1 with one line on bad input."""
    from linkhoi.eval.triplets import write_triplets
    from linkhoi.io import check_output_file

    try:
        check_output_file(args.output)
        fmt = detect_format(args.input)
        if fmt == "triplets":
            raise ValueError(
                f"{args.input}: not an official predictions format (a .pkl V-COCO pickle, a "
                "SWiG-HOI json keyed by image ids, or a folder of detections_XX.mat)"
            )
        names = None
        if args.image_list is not None:
            names = args.image_list.read_text(encoding="utf-8").split()
        elif args.annotations is not None:
            from linkhoi.data.hico import read_hico

            names = [s.file_name for s in read_hico(args.annotations, split="test")]
        space, images = read_official(args.input, fmt, names)
        path = write_triplets(args.output, images, space)
    except (ValueError, OSError) as err:  # TripletFileError / DatasetError are ValueErrors
        print(f"linkhoi convert-preds: error: {err}", file=sys.stderr)
        return 1
    n = sum(len(d) for _, d in images)
    print(f"wrote {path} ({len(images)} images, {n} detections, label space {space}; "
          f"read {FORMATS[fmt][1]})")  # fmt: skip
    return 0
