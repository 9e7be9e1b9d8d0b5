"""Cost of the LINK head relative to its frozen backbone (default ViT-B/16, random weights, 224).

One image with 15 humans and 15 objects (15 x 29 = 435 pairs). Both parts are timed in the
same run, alternately (median of ``--repeats`` after a warm-up), then their multiply-accumulates
(counted by ``torch.utils.flop_counter`` on the plain attention path, so that fused kernels are not
missed), parameter counts and peak memory are printed. ``mac_ratio`` is the time ratio the head
would reach if it ran as efficiently as the backbone. The last line is exactly
``ratio=<head time / backbone time>`` (goal: <= 0.15 on CPU).

    python benchmarks/model_cost.py [--repeats 7] [--threads 1] [--backbone SPEC]
        [--weights PATH] [--set d_pair=256 --set ffn_ratio=2 ...]  # LinkConfig overrides

``--backbone`` takes any spec of ``linkhoi.model.load_backbone`` (``vit-b16``,
``open_clip:ViT-L-14``, ``open_clip:my.json``, ``hf:DIR``); without ``--weights`` open_clip
specs are seeded random and ``hf:DIR`` reads the folder's weights.
"""

from __future__ import annotations

import argparse
import resource
import statistics
import sys
import time

import torch
import yaml
from torch.nn.attention import SDPBackend, sdpa_kernel
from torch.utils.flop_counter import FlopCounterMode

from linkhoi import labels
from linkhoi.detections import Detections
from linkhoi.model import LinkConfig, LinkModel, load_backbone


def _sync() -> None:
    if torch.cuda.is_available():
        torch.cuda.synchronize()


def _interleaved_medians(fns, repeats: int) -> list[float]:
    """Median seconds of each function, run alternately so that load from other processes on
    the machine hits both alike; one warm-up call each first."""
    for fn in fns:
        fn()
    times: list[list[float]] = [[] for _ in fns]
    for _ in range(repeats):
        for fn, out in zip(fns, times, strict=True):
            _sync()
            start = time.perf_counter()
            fn()
            _sync()
            out.append(time.perf_counter() - start)
    return [statistics.median(t) for t in times]


def _macs(fn) -> int:
    """Multiply-accumulates of one call. The fused CPU attention kernels (the fast path of
    nn.MultiheadAttention that open_clip uses, flash SDPA) have no FLOP formula, so they are
    switched to the plain path (same arithmetic, counted matmuls) while counting."""
    fastpath = torch.backends.mha.get_fastpath_enabled()
    torch.backends.mha.set_fastpath_enabled(False)
    try:
        with sdpa_kernel(SDPBackend.MATH), FlopCounterMode(display=False) as counter:
            fn()
    finally:
        torch.backends.mha.set_fastpath_enabled(fastpath)
    return counter.get_total_flops() // 2


def _overrides(items: list[str]) -> dict:
    """``["d_pair=256", "ffn_ratio=2"]`` -> ``{"d_pair": 256, "ffn_ratio": 2}`` (YAML values)."""
    out = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep:
            raise SystemExit(f"--set expects KEY=VALUE, got {item!r}")
        out[key.strip()] = yaml.safe_load(value)
    return out


def _detections(space, n_humans: int, n_objects: int, size=(640, 480)) -> Detections:
    g = torch.Generator().manual_seed(0)
    n = n_humans + n_objects
    w, h = size
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.7, h * 0.7])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.3, h * 0.3]) + 8
    objects = [p for p in range(len(space.objects)) if p != space.human_position]
    lab = [space.human_position] * n_humans + [objects[i % len(objects)] for i in range(n_objects)]
    return Detections(
        torch.cat([xy, xy + wh], 1), torch.tensor(lab), torch.rand(n, generator=g) * 0.5 + 0.5, size
    )


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--backbone", default="vit-b16", help="a load_backbone spec")
    parser.add_argument("--weights", default=None, help="the backbone's weights file")
    parser.add_argument("--label-space", default="hico_det")
    parser.add_argument("--repeats", type=int, default=7)
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads (0: default)")
    parser.add_argument(
        "--set", action="append", default=[], metavar="KEY=VALUE", help="LinkConfig override"
    )
    args = parser.parse_args(argv)
    config = LinkConfig(**{"backbone": args.backbone, **_overrides(args.set)})
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    device = torch.device("cuda" if torch.cuda.is_available() else "cpu")
    space = labels.load(args.label_space)
    backbone = load_backbone(args.backbone, args.weights, device=device)
    # Random unit text embeddings: the classifier's cost does not depend on their values.
    width = backbone.text_dim or backbone.embed_dim
    text = torch.nn.functional.normalize(torch.randn(len(space.hois), width), dim=-1)
    model = LinkModel(config, space, backbone, text).to(device).eval()
    image = torch.randn(1, 3, backbone.image_size, backbone.image_size, device=device)
    dets = [_detections(space, 15, 15).to(device)]

    with torch.no_grad():
        feats = backbone(image)
        n_pairs = model(None, dets, features=feats)[0]["pairs"].shape[0]
        t_backbone, t_head = _interleaved_medians(
            [lambda: backbone(image), lambda: model(None, dets, features=feats)], args.repeats
        )
        macs_backbone = _macs(lambda: backbone(image))
        macs_head = _macs(lambda: model(None, dets, features=feats))

    frozen = sum(p.numel() for p in model.backbone.vision_parameters())
    text_tower = sum(p.numel() for p in model.backbone.parameters()) - frozen
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    peak_rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # kB -> MB on Linux
    print(f"backbone={args.backbone} image={backbone.image_size} grid={backbone.grid} "
          f"device={device} threads={torch.get_num_threads()} repeats={args.repeats}")  # fmt: skip
    print(f"detections=15 humans + 15 objects, pairs={n_pairs}, classes={len(space.hois)}")
    if args.set:
        print("overrides: " + " ".join(args.set))
    print(f"backbone_time_ms={t_backbone * 1e3:.1f}")
    print(f"head_time_ms={t_head * 1e3:.1f}")
    print(f"backbone_gmac={macs_backbone / 1e9:.6f} head_gmac={macs_head / 1e9:.6f}")
    print(f"mac_ratio={macs_head / macs_backbone:.4f}")
    print(f"params_frozen_vision={frozen} params_frozen_text_tower={text_tower}")
    print(f"params_trainable={trainable}")
    if device.type == "cuda":
        print(f"peak_cuda_memory_mb={torch.cuda.max_memory_allocated() / 2**20:.1f}")
    print(f"peak_rss_mb={peak_rss:.1f}")
    print(f"ratio={t_head / t_backbone:.4f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
