"""On-disk cache of frozen-backbone features, one safetensors file per (backbone, image).

The backbone is frozen, so without augmentation its output for an image never changes: the
trainer computes it once and reads it back in later epochs. The key is the backbone's weight
hash and input resolution plus the image file's path, size and modification time, so a
changed image or another backbone never hits a stale entry.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor

from linkhoi.io import atomic_path


def default_cache_dir() -> Path:
    """$LINKHOI_CACHE/features, else ~/.cache/linkhoi/features."""
    root = os.environ.get("LINKHOI_CACHE") or Path.home() / ".cache" / "linkhoi"
    return Path(root) / "features"


class FeatureCache:
    """Backbone features ``(F (C, h, w), global (C,))`` per image file.

    Args:
        root: cache folder.
        backbone_sha256: hash of the backbone weights.
        resolution: the backbone's input size R.
    """

    def __init__(self, root: str | os.PathLike[str], backbone_sha256: str, resolution: int):
        self.root = Path(root) / f"{backbone_sha256[:16]}-{int(resolution)}"
        self.sha = backbone_sha256
        self.resolution = int(resolution)

    def key(self, image_path: str | os.PathLike[str]) -> str:
        """Hex key of (backbone, resolution, absolute path, size, mtime_ns)."""
        path = Path(image_path).resolve()
        st = path.stat()
        text = f"{self.sha}|{self.resolution}|{path}|{st.st_size}|{st.st_mtime_ns}"
        return hashlib.sha256(text.encode()).hexdigest()

    def _file(self, image_path: str | os.PathLike[str]) -> Path:
        key = self.key(image_path)
        return self.root / key[:2] / f"{key}.safetensors"

    def get(self, image_path: str | os.PathLike[str]) -> tuple[Tensor, Tensor] | None:
        """The cached ``(F, global)`` on CPU, or None on a miss (or an unreadable entry)."""
        file = self._file(image_path)
        if not file.exists():
            return None
        try:
            data = load_file(str(file))
            return data["features"], data["global"]
        except Exception:  # a truncated entry from a killed run: recompute it
            return None

    def put(self, image_path: str | os.PathLike[str], features: Tensor, global_: Tensor) -> None:
        """Store one image's ``(F (C, h, w), global (C,))``, atomically."""
        tensors = {
            "features": features.detach().to("cpu").contiguous(),
            "global": global_.detach().to("cpu").contiguous(),
        }
        with atomic_path(self._file(image_path), durable=False) as tmp:  # a cache
            save_file(tensors, str(tmp))


def cached_features(
    cache: FeatureCache | None,
    image_paths: list[Path | None],
    compute: callable,
    device: torch.device,
) -> tuple[Tensor, Tensor]:
    """Batch features from the cache, computing (and storing) only the missing images.

    Args:
        cache: the cache, or None to compute everything.
        image_paths: B image files (None: not cacheable, always computed).
        compute: ``compute(indices) -> (F (b, C, h, w), global (b, C))`` for those images.
    Returns:
        ``(F (B, C, h, w), global (B, C))`` on ``device``.
    """
    found: list[tuple[Tensor, Tensor] | None] = [
        cache.get(p) if cache is not None and p is not None else None for p in image_paths
    ]
    missing = [i for i, f in enumerate(found) if f is None]
    if missing:
        feats, globs = compute(missing)
        for j, i in enumerate(missing):
            found[i] = (feats[j], globs[j])
            if cache is not None and image_paths[i] is not None:
                cache.put(image_paths[i], feats[j].float(), globs[j].float())
    feats = torch.stack([f[0].to(device) for f in found])
    globs = torch.stack([f[1].to(device) for f in found])
    return feats, globs
