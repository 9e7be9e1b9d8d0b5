"""facebookresearch/detr checkpoints -> a transformers `DetrForObjectDetection` folder.

The key mapping follows transformers' own DETR conversion script, written for the module
names of the installed transformers (``o_proj``, ``mlp.fc1``, ``backbone.model``): the
backbone keys move from ``backbone.0.body`` to ``model.backbone.model`` (a timm ResNet, built
with ``use_pretrained_backbone=False`` so nothing is downloaded), each attention's packed
``in_proj_weight`` (3d, d) is split into q/k/v projections, and the heads are renamed.
`original_to_hf` and `hf_to_original` are inverses. The class head keeps the checkpoint's
size: 91 COCO ids + "no object" for COCO DETR, the dataset's objects + 1 for fine-tuned ones
(HICO-DET: 80 + 1).
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import torch

from linkhoi.detections.base import DetectionError

Tensor = torch.Tensor

# (original, transformers) name pieces inside an encoder / decoder layer.
_LAYER_RENAMES = {
    "encoder": [
        ("self_attn.out_proj", "self_attn.o_proj"),
        ("linear1", "mlp.fc1"),
        ("linear2", "mlp.fc2"),
        ("norm1", "self_attn_layer_norm"),
        ("norm2", "final_layer_norm"),
    ],
    "decoder": [
        ("self_attn.out_proj", "self_attn.o_proj"),
        ("multihead_attn.out_proj", "encoder_attn.o_proj"),
        ("linear1", "mlp.fc1"),
        ("linear2", "mlp.fc2"),
        ("norm1", "self_attn_layer_norm"),
        ("norm2", "encoder_attn_layer_norm"),
        ("norm3", "final_layer_norm"),
    ],
}
_PACKED = {"self_attn": "self_attn", "multihead_attn": "encoder_attn"}  # in_proj -> q/k/v
_TOP = [  # outside the layers
    ("backbone.0.body.", "model.backbone.model."),
    ("input_proj.", "model.input_projection."),
    ("query_embed.", "model.query_position_embeddings."),
    ("transformer.decoder.norm.", "model.decoder.layernorm."),
    ("class_embed.", "class_labels_classifier."),
    ("bbox_embed.", "bbox_predictor."),
]
_LAYER = re.compile(r"^transformer\.(encoder|decoder)\.layers\.(\d+)\.(.+)$")
_HF_LAYER = re.compile(r"^model\.(encoder|decoder)\.layers\.(\d+)\.(.+)$")


def original_to_hf(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """facebookresearch/detr state dict -> `DetrForObjectDetection` state dict (same tensors,
    q/k/v slices of the packed projections). Unknown keys raise `DetectionError`."""
    out: dict[str, Tensor] = {}
    for key, value in state.items():
        m = _LAYER.match(key)
        if m:
            part, i, rest = m.groups()
            prefix = f"model.{part}.layers.{i}."
            attn, _, kind = rest.partition(".in_proj_")
            if kind in ("weight", "bias") and attn in _PACKED:  # (3d, ...) -> q, k, v
                for name, chunk in zip("qkv", value.chunk(3, dim=0), strict=True):
                    out[f"{prefix}{_PACKED[attn]}.{name}_proj.{kind}"] = chunk.clone()
                continue
            for old, new in _LAYER_RENAMES[part]:
                if rest.startswith(old + "."):
                    out[prefix + new + rest[len(old) :]] = value
                    break
            else:
                raise DetectionError(f"unexpected DETR key {key!r}")
            continue
        for old, new in _TOP:
            if key.startswith(old):
                out[new + key[len(old) :]] = value
                break
        else:
            raise DetectionError(f"unexpected DETR key {key!r} (not a DETR detection model?)")
    return out


def hf_to_original(state: dict[str, Tensor]) -> dict[str, Tensor]:
    """The inverse of `original_to_hf` (q/k/v concatenated back into ``in_proj_*``)."""
    out: dict[str, Tensor] = {}
    packed: dict[str, dict[str, Tensor]] = {}
    back = {v: k for k, v in _PACKED.items()}
    for key, value in state.items():
        m = _HF_LAYER.match(key)
        if m:
            part, i, rest = m.groups()
            prefix = f"transformer.{part}.layers.{i}."
            qkv = re.match(r"^(self_attn|encoder_attn)\.([qkv])_proj\.(weight|bias)$", rest)
            if qkv:
                attn, name, kind = qkv.groups()
                packed.setdefault(f"{prefix}{back[attn]}.in_proj_{kind}", {})[name] = value
                continue
            for old, new in _LAYER_RENAMES[part]:
                if rest.startswith(new + "."):
                    out[prefix + old + rest[len(new) :]] = value
                    break
            else:
                raise DetectionError(f"unexpected transformers DETR key {key!r}")
            continue
        for old, new in _TOP:
            if key.startswith(new):
                out[old + key[len(new) :]] = value
                break
        else:
            raise DetectionError(f"unexpected transformers DETR key {key!r}")
    for key, parts in packed.items():
        out[key] = torch.cat([parts["q"], parts["k"], parts["v"]], dim=0)
    return out


def read_checkpoint(path: str | Path) -> dict[str, Tensor]:
    """The state dict of a DETR checkpoint, read with ``weights_only=True``: facebookresearch's
    ``{"model": ...}``, UPT/pocket's ``{"model_state_dict": ...}`` or a bare state dict."""
    path = Path(path)
    if not path.is_file():
        raise DetectionError("DETR checkpoint not found", path)
    try:
        data: Any = torch.load(path, map_location="cpu", weights_only=True)
    except Exception as err:  # pickles with code, truncated files
        first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
        raise DetectionError(f"cannot read the checkpoint safely: {first[:300]}", path) from None
    for key in ("model", "model_state_dict", "state_dict"):
        if isinstance(data, dict) and isinstance(data.get(key), dict):
            data = data[key]
            break
    if not isinstance(data, dict) or not all(isinstance(v, Tensor) for v in data.values()):
        raise DetectionError("not a state dict of tensors", path)
    if "class_embed.weight" not in data:
        raise DetectionError("no class_embed.weight: not a DETR detection checkpoint", path)
    return data


def detr_config(
    state: dict[str, Tensor], names: list[str], heads: int = 8, dilation: bool = False
) -> Any:
    """A `DetrConfig` matching the original state dict's sizes (layers, width, queries, FFN,
    ResNet-50/101, class count); `names` are the classes of the head without "no object"."""
    from transformers import DetrConfig

    num_labels = state["class_embed.weight"].shape[0] - 1
    if len(names) != num_labels:
        raise DetectionError(
            f"the checkpoint's class head has {num_labels} classes (+ no object) but "
            f"{len(names)} class names were given"
        )
    layers = {
        p: {int(m.group(2)) for k in state if (m := _LAYER.match(k)) and m.group(1) == p}
        for p in ("encoder", "decoder")
    }
    blocks = {int(k.split(".")[4]) for k in state if k.startswith("backbone.0.body.layer3.")}
    depth = {6: "resnet50", 23: "resnet101"}.get(len(blocks))
    if depth is None:
        raise DetectionError(f"backbone with {len(blocks)} layer3 blocks: not ResNet-50/101")
    return DetrConfig(
        backbone=depth,
        use_pretrained_backbone=False,  # the checkpoint has the weights: download nothing
        dilation=dilation,
        encoder_layers=len(layers["encoder"]),
        decoder_layers=len(layers["decoder"]),
        d_model=state["query_embed.weight"].shape[1],
        num_queries=state["query_embed.weight"].shape[0],
        encoder_ffn_dim=state["transformer.encoder.layers.0.linear1.weight"].shape[0],
        decoder_ffn_dim=state["transformer.decoder.layers.0.linear1.weight"].shape[0],
        encoder_attention_heads=heads,
        decoder_attention_heads=heads,
        id2label=dict(enumerate(names)),
        label2id={n: i for i, n in enumerate(names)},
    )


def class_names(classes: str, num_labels: int) -> list[str]:
    """Names of the head's classes: ``coco`` (torchvision's 91-entry COCO index space, as
    COCO DETR's head), a label space (packaged name or file: its objects in order, as
    HICO-DET-fine-tuned heads), a ``.txt`` file (one name per line), or ``auto`` (91 -> coco,
    80 -> hico_det)."""
    if classes == "auto":
        classes = {91: "coco", 80: "hico_det"}.get(num_labels, "")
        if not classes:
            raise DetectionError(
                f"the class head has {num_labels} classes: say which with --classes (a label "
                "space or a .txt file of names)"
            )
    if classes == "coco":
        from linkhoi.detections.torchvision_detector import COCO_CATEGORIES

        return list(COCO_CATEGORIES)
    if classes.endswith(".txt"):
        try:
            lines = Path(classes).read_text().splitlines()
        except OSError as err:
            raise DetectionError(f"cannot read class names: {err}", classes) from None
        return [ln.strip() for ln in lines if ln.strip()]
    from linkhoi.labels import LabelError, load

    try:
        return list(load(classes).objects)
    except LabelError as err:
        raise DetectionError(f"--classes {classes!r}: {err}") from None


def convert_state(
    state: dict[str, Tensor], classes: str = "auto", heads: int = 8, dilation: bool = False
) -> Any:
    """A `DetrForObjectDetection` (eval mode) holding an original DETR state dict, loaded
    strictly; `classes` as in `class_names`."""
    from transformers import DetrForObjectDetection

    names = class_names(classes, state["class_embed.weight"].shape[0] - 1)
    model = DetrForObjectDetection(detr_config(state, names, heads=heads, dilation=dilation))
    try:
        model.load_state_dict(original_to_hf(state), strict=True)
    except RuntimeError as err:
        lines = [ln.strip() for ln in str(err).splitlines() if ln.strip()]
        raise DetectionError(
            f"weights do not fit DETR: {'; '.join(lines[1:2]) or lines[0]}"[:400]
        ) from None
    return model.eval()


def convert_detr(
    checkpoint: str | Path,
    out_dir: str | Path,
    classes: str = "auto",
    heads: int = 8,
    dilation: bool = False,
) -> Path:
    """Convert a facebookresearch/detr checkpoint into a transformers folder (model +
    `DetrImageProcessor`, DETR's 800/1333 resize) that ``--detector hf:OUT_DIR`` reads.
    The folder appears only when complete (written beside it, then renamed)."""
    import shutil
    import tempfile

    from transformers import DetrImageProcessor

    out = Path(out_dir)
    if out.exists():
        raise DetectionError("output folder exists; remove it or choose another", out)
    try:
        model = convert_state(read_checkpoint(checkpoint), classes, heads, dilation)
    except DetectionError as err:
        if err.args and "weights do not fit" in str(err):
            raise DetectionError(f"{err}", checkpoint) from None
        raise
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        model.save_pretrained(tmp)
        DetrImageProcessor().save_pretrained(tmp)
        tmp.rename(out)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return out


def add_arguments(parser: Any) -> None:
    """Options of `linkhoi convert-detr`."""
    parser.add_argument("checkpoint", help="facebookresearch/detr checkpoint (.pth)")
    parser.add_argument("out_dir", help="transformers folder to write (must not exist)")
    parser.add_argument(
        "--classes",
        default="auto",
        help="class head names: coco, a label space (hico_det, FILE.yaml) or names.txt "
        "(default auto: 91 classes -> coco, 80 -> hico_det)",
    )
    parser.add_argument("--heads", type=int, default=8, help="attention heads (DETR: 8)")
    parser.add_argument("--dilation", action="store_true", help="a DC5 model (dilated layer4)")


def run(args: Any) -> int:
    """Convert; 0 on success, 2 with one message on bad input."""
    import sys

    try:
        out = convert_detr(args.checkpoint, args.out_dir, args.classes, args.heads, args.dilation)
    except DetectionError as err:
        print(f"linkhoi convert-detr: error: {err}", file=sys.stderr)
        return 2
    print(f"wrote {out} (use it with --detector hf:{out})")
    return 0
