"""Training configuration: dataclasses <-> YAML, with typed ``key=value`` overrides.

A run's configuration is plain data. ``load_config(path, overrides)`` reads a YAML file (or a
config packaged in ``linkhoi/configs/``, by bare name such as ``synthetic_teacher``),
applies dotted overrides (``optim.lr=3e-4``, ``distill.map=false``), checks every key and type,
and returns a ``TrainConfig``. ``TrainConfig.to_dict()`` is what the trainer writes beside its
outputs (``config.yaml``) and stores in checkpoints.
"""

from __future__ import annotations

import dataclasses
import math
import os
import types
import typing
from dataclasses import dataclass, field
from importlib import resources
from pathlib import Path
from typing import Any

import yaml

from linkhoi.io import InputError, atomic_write_text, read_limited, too_deep
from linkhoi.yaml_input import safe_load as safe_yaml

if typing.TYPE_CHECKING:
    from importlib.resources.abc import Traversable


class ConfigError(ValueError):
    """A configuration file or override is wrong; the message names the file and the key."""


@dataclass
class DataConfig:
    """Where the training (and optional validation) data comes from."""

    label_space: str = "synthetic"  # packaged name or path of a label-space file
    format: str = "generic"  # `read_dataset` kind: generic | hico_det | vcoco | swig_hoi
    train: dict[str, Any] = field(default_factory=dict)  # keyword arguments of `read_dataset`
    image_root: str = ""
    val: dict[str, Any] = field(default_factory=dict)  # empty: no per-epoch evaluation
    val_image_root: str = ""
    detections: str = "gt"  # "gt" (ground-truth boxes) or a detection file for training
    val_detections: str = "gt"
    zero_shot: str = ""  # label-space subset of unseen HOI classes (rf_uc, nf_uc, uo, uv, unseen)
    augment: bool = False  # horizontal flip + zoom of image and boxes (disables the cache)
    flip_prob: float = 0.5
    # Zoom factors (train/augment.py): > 1 crops a window of 1/s keeping the GT boxes, < 1 pads.
    scales: list[float] = field(default_factory=lambda: [0.75, 0.875, 1.0, 1.125, 1.25])
    num_workers: int = 0


@dataclass
class OptimConfig:
    """AdamW + step schedule (docs/method.md §7); batch sizes are per process."""

    lr: float = 1e-4
    weight_decay: float = 1e-4
    epochs: int = 20
    lr_drop: list[int] = field(default_factory=lambda: [10])  # epochs where lr *= lr_gamma
    lr_gamma: float = 0.1
    clip_grad: float = 0.1  # max grad norm; 0 disables
    batch_size: int = 16  # images per process per micro-batch
    accumulate: int = 1  # micro-batches per optimizer step
    focal_alpha: float = 0.5
    focal_gamma: float = 0.1
    aux_loss: bool = True  # focal loss on every decoder layer's logits too
    # Learning-rate factor of the text-initialised classifier rows T (method.md §4 trains them
    # with the rest); 0 freezes T at the VLM's prompt embeddings, which keeps the pair queries
    # in the VLM's text space, where the zero-shot and open-vocabulary rows live.
    text_lr_scale: float = 1.0


@dataclass
class DistillConfig:
    """Stage-2 distillation (docs/method.md §6). Used only when teachers are given."""

    teachers: list[str] = field(default_factory=list)  # teacher checkpoints
    teacher_clip_weights: list[str] = field(default_factory=list)  # per teacher; empty: same
    # Weights of each teacher's model.text_backbone when its checkpoint leaves them out (a
    # DINOv2 teacher with a CLIP text tower); per teacher; empty: runtime.text_weights.
    teacher_text_weights: list[str] = field(default_factory=list)
    temperature: float = 2.0
    logit: bool = True
    logit_weight: float = 1.0
    query: bool = True
    query_weight: float = 1.0
    map: bool = True
    map_weight: float = 1.0


@dataclass
class RuntimeConfig:
    """Everything that does not change the maths of a step."""

    out_dir: str = "runs/train"
    seed: int = 0
    device: str = "auto"  # auto | cpu | cuda | cuda:N
    amp: bool = True  # mixed precision, CUDA only
    clip_weights: str = ""  # the student's backbone weights file (create_model's clip_weights)
    text_weights: str = ""  # weights of model.text_backbone (create_model's text_weights)
    cache_dir: str = ""  # text-embedding / feature cache; empty: $LINKHOI_CACHE or ~/.cache
    feature_cache: bool = True  # cache frozen-backbone features on disk (augmentation off)
    max_steps: int = 0  # stop (and checkpoint) after this many optimizer steps; 0: no limit
    eval_every: int = 1  # epochs between evaluations when data.val is set
    find_unused_parameters: bool = True  # DDP: images without pairs leave the head unused
    progress: bool = True  # tqdm bars


@dataclass
class TrainConfig:
    """The whole run: data, model (a `LinkConfig` dict), optimiser, distillation, runtime."""

    data: DataConfig = field(default_factory=DataConfig)
    model: dict[str, Any] = field(default_factory=dict)
    optim: OptimConfig = field(default_factory=OptimConfig)
    distill: DistillConfig = field(default_factory=DistillConfig)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)

    def to_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], source: str = "<dict>") -> TrainConfig:
        if not isinstance(data, dict):
            raise ConfigError(
                f"{source}: the top level must be a mapping, got {type(data).__name__}"
            )
        cfg = cls()
        for key, value in data.items():
            _set(cfg, key.split("."), value, source, key)
        return cfg

    def to_yaml(self) -> str:
        return yaml.safe_dump(self.to_dict(), sort_keys=False)

    def validate(self, source: str = "config", overrides: list[str] | None = None) -> TrainConfig:
        """Raise one `ConfigError` for values no run can use (types are checked on setting).

        ``source`` names the config file; a bad value that a ``key=value`` of ``overrides``
        set is blamed on that override instead.
        """
        from linkhoi.data.readers import KINDS  # the `read_dataset` kinds

        given = {parse_override(text)[0]: text for text in overrides or []}

        def blame(key: str) -> str:
            for k, text in reversed(given.items()):  # the last override of a key is the one used
                if key == k or key.startswith(f"{k}.") or k.startswith(f"{key}."):
                    return f"override {text!r}"
            return source

        o, d, r = self.optim, self.data, self.runtime
        checks = [
            ("optim.lr", o.lr, 0 < o.lr < math.inf, "> 0"),
            ("optim.weight_decay", o.weight_decay, 0 <= o.weight_decay < math.inf, ">= 0"),
            ("optim.text_lr_scale", o.text_lr_scale, 0 <= o.text_lr_scale < math.inf, ">= 0"),
            ("optim.lr_gamma", o.lr_gamma, 0 < o.lr_gamma < math.inf, "> 0"),
            ("optim.clip_grad", o.clip_grad, 0 <= o.clip_grad < math.inf, ">= 0"),
            ("optim.epochs", o.epochs, o.epochs >= 1, ">= 1"),
            ("optim.batch_size", o.batch_size, o.batch_size >= 1, ">= 1"),
            ("optim.accumulate", o.accumulate, o.accumulate >= 1, ">= 1"),
            ("optim.focal_gamma", o.focal_gamma, 0 <= o.focal_gamma < math.inf, ">= 0"),
            ("distill.temperature", self.distill.temperature, self.distill.temperature > 0, "> 0"),
            ("runtime.seed", r.seed, r.seed >= 0, ">= 0"),
            ("runtime.max_steps", r.max_steps, r.max_steps >= 0, ">= 0"),
            ("data.format", d.format, d.format in KINDS, f"one of {KINDS}"),
        ]
        for key, value, ok, rule in checks:
            if not ok:
                raise ConfigError(f"{blame(key)}: {key} is {value!r}; it must be {rule}")
        if any(not s > 0 for s in d.scales):
            raise ConfigError(f"{blame('data.scales')}: data.scales must be > 0, got {d.scales}")
        if not 0.0 <= d.flip_prob <= 1.0:
            raise ConfigError(
                f"{blame('data.flip_prob')}: data.flip_prob must be in [0, 1], got {d.flip_prob}"
            )
        if d.train and not isinstance(d.train.get("path", d.train.get("vcoco_json")), str):
            raise ConfigError(
                f"{blame('data.train')}: data.train needs a path (a file name), got {d.train!r}"
            )
        return self


def _check_type(value: Any, hint: Any, where: str) -> Any:
    """Return ``value`` coerced to ``hint`` (int -> float only) or raise ConfigError."""
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        for arg in typing.get_args(hint):
            try:
                return _check_type(value, arg, where)
            except ConfigError:
                continue
        raise ConfigError(f"{where}: expected {hint}, got {value!r}")
    if hint is Any:
        return value
    if hint is type(None):
        if value is None:
            return None
        raise ConfigError(f"{where}: expected null, got {value!r}")
    if origin is list:
        if not isinstance(value, list):
            raise ConfigError(f"{where}: expected a list, got {value!r}")
        (item,) = typing.get_args(hint) or (Any,)
        return [_check_type(v, item, f"{where}[{i}]") for i, v in enumerate(value)]
    if origin is dict:
        if not isinstance(value, dict):
            raise ConfigError(f"{where}: expected a mapping, got {value!r}")
        _, item = typing.get_args(hint) or (str, Any)
        return {str(k): _check_type(v, item, f"{where}.{k}") for k, v in value.items()}
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:  # YAML 1.1 reads "3e-4" (no dot) as a string
            return float(value)
        except ValueError:
            raise ConfigError(f"{where}: expected float, got {value!r}") from None
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)
    if hint in (int, float, bool, str):
        if isinstance(value, hint) and not (hint is int and isinstance(value, bool)):
            return value
        raise ConfigError(f"{where}: expected {hint.__name__}, got {value!r}")
    raise ConfigError(f"{where}: unsupported type {hint}")


def _set(obj: Any, parts: list[str], value: Any, source: str, key: str) -> None:
    """Set a dotted key on nested dataclasses, checking the key exists and the type fits."""
    head, rest = parts[0], parts[1:]
    if isinstance(obj, dict):
        if rest:
            _set(obj.setdefault(head, {}), rest, value, source, key)
        else:
            obj[head] = value
        return
    if not dataclasses.is_dataclass(obj):
        raise ConfigError(f"{source}: {key!r}: {'.'.join(parts)} is not a section")
    hints = typing.get_type_hints(type(obj))
    names = [f.name for f in dataclasses.fields(obj)]
    if head not in names:
        raise ConfigError(
            f"{source}: unknown key {key!r} ({head!r} is not one of {', '.join(names)})"
        )
    current = getattr(obj, head)
    if rest:
        _set(current, rest, value, source, key)
    elif dataclasses.is_dataclass(current):
        if not isinstance(value, dict):
            raise ConfigError(f"{source}: {key!r} is a section, got {value!r}")
        for k, v in value.items():
            _set(current, str(k).split("."), v, source, f"{key}.{k}")
    else:
        setattr(obj, head, _check_type(value, hints[head], f"{source}: {key}"))


def parse_override(text: str) -> tuple[str, Any]:
    """``"optim.lr=3e-4"`` -> ``("optim.lr", 0.0003)`` (the value is parsed as YAML)."""
    if "=" not in text:
        raise ConfigError(f"override {text!r}: expected key=value")
    key, raw = text.split("=", 1)
    try:
        value = safe_yaml(raw) if raw.strip() else ""
    except yaml.YAMLError as exc:
        raise ConfigError(f"override {text!r}: value is not valid YAML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"override {key.strip()!r}: the value is {too_deep()}") from None
    return key.strip(), value


def apply_overrides(cfg: TrainConfig, overrides: list[str]) -> TrainConfig:
    """Apply ``key=value`` strings in order; unknown keys and wrong types raise ConfigError."""
    for text in overrides:
        key, value = parse_override(text)
        _set(cfg, key.split("."), value, "override", key)
    return cfg


def packaged_configs() -> list[str]:
    """Names of the configs shipped inside the package (``linkhoi/configs/*.yaml``)."""
    root = resources.files("linkhoi") / "configs"
    if not root.is_dir():
        return []
    return sorted(f.name[: -len(".yaml")] for f in root.iterdir() if f.name.endswith(".yaml"))


def _packaged_config(name: str) -> Traversable | None:
    """The packaged config called ``name`` (``synthetic_teacher`` or ``synthetic_teacher.yaml``),
    or None when ``name`` is not a bare name of one."""
    if not name or Path(name).name != name:  # a path with folders is never a packaged name
        return None
    stem = name[: -len(".yaml")] if name.endswith(".yaml") else name
    if stem not in packaged_configs():
        return None
    return resources.files("linkhoi") / "configs" / f"{stem}.yaml"


def packaged_config_text(name: str) -> str:
    """The YAML text of the packaged config ``name`` (``hico_det_teacher``); `ConfigError`
    listing the names when there is none."""
    packaged = _packaged_config(name)
    if packaged is None:
        names = ", ".join(packaged_configs()) or "none"
        raise ConfigError(f"{name}: no packaged config of that name (packaged: {names})")
    return packaged.read_text()


def load_config(path: str | os.PathLike[str], overrides: list[str] | None = None) -> TrainConfig:
    """Read a YAML config and apply ``key=value`` overrides (paths stay as written).

    ``path`` is a file, or the bare name of a packaged config (``synthetic_teacher``; see
    ``packaged_configs()``) when no such file exists. A local ``NAME.yaml`` (what
    ``linkhoi train --show NAME > NAME.yaml`` writes) wins over the packaged ``NAME``.
    """
    text, source = None, str(path)
    if not Path(path).is_file() and Path(f"{path}.yaml").is_file():
        path = Path(f"{path}.yaml")
        source = str(path)
    if not Path(path).is_file():
        packaged = _packaged_config(str(path))
        if packaged is not None:
            text, source = packaged.read_text(), f"packaged config {packaged.name}"
    try:
        if text is None:
            text = read_limited(path, InputError).decode("utf-8")
        data = safe_yaml(text) or {}
    except FileNotFoundError:
        names = ", ".join(packaged_configs()) or "none"
        raise ConfigError(
            f"{path}: config file not found (packaged configs, by bare name: {names})"
        ) from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{source}: not valid YAML ({exc})") from None
    except RecursionError:
        raise ConfigError(f"{source}: {too_deep()}") from None
    except InputError as exc:  # larger than the input limit
        raise ConfigError(f"{source}: {exc.reason}") from None
    except (UnicodeDecodeError, IsADirectoryError) as exc:
        raise ConfigError(f"{source}: not a UTF-8 YAML text file ({exc})") from None
    cfg = TrainConfig.from_dict(data, source=source)
    return apply_overrides(cfg, overrides or []).validate(source, overrides)


def save_config(cfg: TrainConfig, path: str | os.PathLike[str]) -> None:
    """Write the resolved config as YAML, atomically."""
    atomic_write_text(path, cfg.to_yaml())
