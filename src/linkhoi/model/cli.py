"""``linkhoi convert-clip SRC DST.safetensors``: OpenAI TorchScript CLIP archive -> safetensors.

Run once per archive; afterwards pass DST wherever linkhoi asks for CLIP weights.
"""

from __future__ import annotations

import argparse
import sys


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("src", help="OpenAI CLIP TorchScript archive, e.g. ViT-B-16.pt")
    parser.add_argument("dst", help="output open_clip state dict, must end in .safetensors")


def _matching_backbone(arch: dict[str, int]) -> str | None:
    from linkhoi.model.backbone import BACKBONES

    for name, spec in BACKBONES.items():
        cfg = spec.model_config()["vision_cfg"]
        if (
            arch["width"] == cfg["width"]
            and arch["layers"] == cfg["layers"]
            and arch["patch_size"] == spec.patch_size
            and arch["embed_dim"] == spec.embed_dim
        ):
            return name
    return None


def run(args: argparse.Namespace) -> int:
    from linkhoi.io import OutputError, check_output_file
    from linkhoi.model.clip_loading import ClipLoadError, convert_openai_archive

    try:
        check_output_file(args.dst)
        result = convert_openai_archive(args.src, args.dst)
    except (ClipLoadError, OutputError) as exc:
        print(f"linkhoi convert-clip: error: {exc}", file=sys.stderr)
        return 2
    arch = result["architecture"]
    backbone = _matching_backbone(arch)
    print(
        f"architecture: ViT width={arch['width']} layers={arch['layers']} "
        f"patch={arch['patch_size']} image={arch['image_size']} embed_dim={arch['embed_dim']}"
        + (f" (backbone '{backbone}')" if backbone else " (no named linkhoi backbone matches)")
    )
    print(f"tensors: {result['tensors']}")
    print(f"wrote: {args.dst}")
    print(f"sha256: {result['sha256']}")
    return 0
