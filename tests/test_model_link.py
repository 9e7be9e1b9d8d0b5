"""The whole LINK model on the tiny random CLIP backbone (CPU, seconds)."""

from __future__ import annotations

import dataclasses

import pytest
import torch
from safetensors.torch import save_file

from linkhoi import labels
from linkhoi.detections import Detections
from linkhoi.model import LinkConfig, create_model, to_triplets, valid_class_table
from linkhoi.model.checkpoint import CheckpointError, load_model, model_payload, save_checkpoint

torch.set_num_threads(1)

SMALL = dict(
    backbone="tiny", d_model=32, d_pair=48, d_latent=32, num_heads=4, pe_dims=16,
    spatial_hidden=(16, 32), dropout=0.0,
)  # fmt: skip


@pytest.fixture(scope="module")
def space():
    return labels.load("synthetic")


@pytest.fixture(scope="module")
def model(space):
    torch.manual_seed(0)
    return create_model(LinkConfig(**SMALL), space, device="cpu").eval()


def make_dets(space, n_humans: int, objects: list[str], size=(160, 120), seed=0) -> Detections:
    g = torch.Generator().manual_seed(seed)
    names = ["person"] * n_humans + objects
    n = len(names)
    w, h = size
    xy = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.6, h * 0.6])
    wh = torch.rand(n, 2, generator=g) * torch.tensor([w * 0.35, h * 0.35]) + 4
    return Detections(
        torch.cat([xy, xy + wh], 1),
        torch.tensor([space.object_position(x) for x in names], dtype=torch.int64),
        torch.rand(n, generator=g) * 0.7 + 0.3,
        size,
    )


def images(b: int, seed: int = 1) -> torch.Tensor:
    return torch.randn(b, 3, 64, 64, generator=torch.Generator().manual_seed(seed))


def check_shapes(out: dict, n: int, p: int, k: int, cfg: LinkConfig) -> None:
    assert out["pairs"].shape == (p, 2) and out["pairs"].dtype == torch.int64
    assert out["boxes"].shape == (n, 4) and out["object_labels"].shape == (n,)
    assert out["det_scores"].shape == (n,)
    for key in ("logits", "fused_logits", "scores", "valid"):
        assert out[key].shape == (p, k), key
    assert out["valid"].dtype == torch.bool
    assert len(out["unary_queries"]) == cfg.encoder_layers
    assert all(q.shape == (n, cfg.d_model) for q in out["unary_queries"])
    assert len(out["pair_queries"]) == cfg.decoder_layers
    assert all(q.shape == (p, cfg.d_pair) for q in out["pair_queries"])
    assert all(q.shape == (p, k) for q in out["layer_logits"])
    if cfg.use_spatial_branch:
        assert out["latent_map"].shape == (cfg.d_latent, 4, 4)
    else:
        assert out["latent_map"] is None


def test_shapes_one_and_many_images(model, space):
    k, cfg = len(space.hois), model.config
    one = model(images(1), [make_dets(space, 2, ["ball", "cup", "horse"])])
    assert len(one) == 1
    check_shapes(one[0], 5, 2 * 4, k, cfg)
    dets = [
        make_dets(space, 1, ["ball"], seed=1),
        make_dets(space, 3, ["cup", "horse", "chair", "book"], seed=2),
        make_dets(space, 2, [], seed=3),  # human-human pairs only
    ]
    outs = model(images(3), dets)
    for out, (n, p) in zip(outs, [(2, 1), (7, 18), (2, 2)], strict=True):
        check_shapes(out, n, p, k, cfg)
    # Batching does not change an image's result (padding is masked).
    alone = model(images(3)[1:2], dets[1:2])[0]
    assert torch.allclose(alone["logits"], outs[1]["logits"], atol=1e-5)


def test_empty_images(model, space):
    k, cfg = len(space.hois), model.config
    dets = [
        Detections.empty((100, 80)),
        make_dets(space, 0, ["ball", "cup"]),  # no human
        make_dets(space, 1, []),  # a lone human
        make_dets(space, 1, ["cup"]),
    ]
    outs = model(images(4), dets)
    for out, n in zip(outs[:3], [0, 2, 1], strict=True):
        check_shapes(out, n, 0, k, cfg)
        assert to_triplets(out, space) == []
    check_shapes(outs[3], 2, 1, k, cfg)
    # All images empty: no crash either.
    outs = model(images(2), dets[:2])
    check_shapes(outs[0], 0, 0, k, cfg)


def test_masking_and_score_range(model, space):
    out = model(images(1), [make_dets(space, 2, ["ball", "horse", "person"])])[0]
    objects = out["object_labels"][out["pairs"][:, 1]]
    for row, obj in enumerate(objects.tolist()):
        expect = [h.object == space.objects[obj] for h in space.hois]
        assert out["valid"][row].tolist() == expect
    scores = out["scores"]
    assert torch.all(scores[~out["valid"]] == 0)
    assert torch.all(scores[out["valid"]] > 0)
    assert scores.min() >= 0 and scores.max() <= 1
    # Inference scores use λ_test = 2.8: P^2.8 σ(O).
    s = out["det_scores"]
    prior = (s[out["pairs"][:, 0]] * s[out["pairs"][:, 1]]).pow(2.8).unsqueeze(1)
    expected = torch.where(out["valid"], prior * torch.sigmoid(out["logits"]), 0.0)
    assert torch.allclose(scores, expected, atol=1e-6)


def test_prior_fused_logit_identity(model, space):
    out = model(images(1), [make_dets(space, 2, ["ball", "cup"])])[0]
    s = out["det_scores"]
    prior = (s[out["pairs"][:, 0]] * s[out["pairs"][:, 1]]).unsqueeze(1)  # λ_train = 1
    assert torch.allclose(
        torch.sigmoid(out["fused_logits"]), prior * torch.sigmoid(out["logits"]), atol=1e-6
    )
    assert torch.equal(out["layer_logits"][-1], out["fused_logits"])


def test_auxiliary_layer_logits_only_when_asked(model, space):
    dets = [make_dets(space, 2, ["ball", "cup"])]
    last_only = model(images(1), dets)[0]  # eval mode: the earlier layers are not classified
    every = model(images(1), dets, aux_logits=True)[0]
    assert len(last_only["layer_logits"]) == 1
    assert len(every["layer_logits"]) == model.config.decoder_layers >= 2
    assert torch.equal(every["layer_logits"][-1], last_only["fused_logits"])
    assert not torch.equal(every["layer_logits"][0], every["layer_logits"][-1])
    assert torch.equal(every["scores"], last_only["scores"])


def test_permutation_equivariance(model, space):
    dets = make_dets(space, 3, ["ball", "cup", "horse", "person"], seed=5)
    perm = torch.tensor([4, 0, 6, 2, 5, 1, 3])
    shuffled = Detections(dets.boxes[perm], dets.labels[perm], dets.scores[perm], dets.image_size)
    img = images(1)
    a = model(img, [dets])[0]
    b = model(img, [shuffled])[0]
    # Pair (i, j) of the shuffled image is pair (perm[i], perm[j]) of the original.
    index = {tuple(p): r for r, p in enumerate(a["pairs"].tolist())}
    rows = [index[(int(perm[i]), int(perm[j]))] for i, j in b["pairs"].tolist()]
    assert len(rows) == a["pairs"].shape[0]
    for key in ("logits", "fused_logits", "scores"):
        assert torch.allclose(b[key], a[key][rows], atol=1e-5), key
    assert torch.allclose(b["unary_queries"][-1], a["unary_queries"][-1][perm], atol=1e-5)


def test_precomputed_features_match(model, space):
    dets = [make_dets(space, 2, ["ball"]), make_dets(space, 1, ["cup", "book"], seed=3)]
    img = images(2)
    direct = model(img, dets)
    feats = model.backbone(img)
    cached = model(None, dets, features=feats)
    for x, y in zip(direct, cached, strict=True):
        assert torch.equal(x["logits"], y["logits"])


def test_gradients_only_into_head(space):
    torch.manual_seed(1)
    model = create_model(LinkConfig(**{**SMALL, "dropout": 0.1}), space, device="cpu").train()
    assert not model.backbone.training  # stays frozen in eval mode
    outs = model(images(2), [make_dets(space, 2, ["ball", "cup"]), make_dets(space, 1, ["horse"])])
    loss = sum(
        (o["fused_logits"][o["valid"]].sum() + o["latent_map"].square().mean()) for o in outs
    )
    loss = loss + sum(o["layer_logits"][0][o["valid"]].sum() for o in outs)
    loss.backward()
    for name, p in model.backbone.named_parameters():
        assert p.grad is None and not p.requires_grad, name
    head = [(n, p) for n, p in model.named_parameters() if not n.startswith("backbone.")]
    assert head and all(p.requires_grad for _, p in head)
    missing = [n for n, p in head if p.grad is None or not torch.isfinite(p.grad).all()]
    assert missing == []
    assert model.text_init.grad is None and not model.text_init.requires_grad
    assert torch.equal(model.text_init, model.text.detach())  # unchanged before any step


@pytest.mark.parametrize(
    "switch", ["use_geometry_encoder", "use_spatial_branch", "use_semantic_branch", "all"]
)
def test_ablation_switches(space, switch):
    names = ["use_geometry_encoder", "use_spatial_branch", "use_semantic_branch"]
    off = {n: False for n in names} if switch == "all" else {switch: False}
    cfg = LinkConfig(**{**SMALL, **off})
    model = create_model(cfg, space, device="cpu").eval()
    full = create_model(LinkConfig(**SMALL), space, device="cpu")
    n_params = sum(p.numel() for p in model.parameters() if p.requires_grad)
    assert n_params < sum(p.numel() for p in full.parameters() if p.requires_grad)
    out = model(images(1), [make_dets(space, 2, ["ball", "cup"])])[0]
    check_shapes(out, 4, 6, len(space.hois), cfg)
    assert torch.isfinite(out["logits"]).all()


def test_checkpoint_round_trip(model, space, tmp_path):
    dets = [make_dets(space, 2, ["ball", "cup"]), make_dets(space, 1, ["horse"], seed=4)]
    img = images(2)
    with torch.no_grad():
        model.text.add_(0.01)  # a trained classifier differs from its initialisation
    expected = model(img, dets)
    for include in (True, False):
        path = save_checkpoint(tmp_path / f"m{include}.pt", model_payload(model, include))
        loaded = load_model(path, device="cpu")
        assert loaded.config == model.config and loaded.label_space == space
        for x, y in zip(expected, loaded(img, dets), strict=True):
            for key in ("logits", "scores", "fused_logits"):
                assert torch.equal(x[key], y[key]), key
    # A random backbone that does not hash as recorded is refused.
    payload = model_payload(model, include_backbone=False)
    payload["backbone"] = {**payload["backbone"], "sha256": "0" * 64}
    with pytest.raises(CheckpointError, match="backbone.sha256"):
        load_model(payload, device="cpu")


def test_checkpoint_needs_matching_clip_weights(model, space, tmp_path):
    weights = tmp_path / "tiny.safetensors"
    save_file({k: v.contiguous() for k, v in model.backbone.clip.state_dict().items()}, weights)
    m = create_model(dataclasses.replace(model.config), space, clip_weights=weights, device="cpu")
    m.eval()
    payload = model_payload(m)  # tiny: included by default
    assert payload["backbone"]["included"] and not payload["backbone"]["random"]
    payload = model_payload(m, include_backbone=False)
    assert not any(k.startswith("backbone.") for k in payload["model"])
    with pytest.raises(CheckpointError, match="clip_weights"):
        load_model(payload, device="cpu")
    other = tmp_path / "other.safetensors"
    state = {k: v.contiguous() + 1 for k, v in model.backbone.clip.state_dict().items()}
    save_file(state, other)
    with pytest.raises(CheckpointError, match="not the backbone"):
        load_model(payload, clip_weights=other, device="cpu")
    dets = [make_dets(space, 2, ["ball"])]
    loaded = load_model(payload, clip_weights=weights, device="cpu")
    assert torch.equal(loaded(images(1), dets)[0]["logits"], m(images(1), dets)[0]["logits"])


def test_to_triplets_top_k(model, space):
    out = model(images(1), [make_dets(space, 2, ["ball", "cup", "person"])])[0]
    trip = to_triplets(out, space, top_k=5)
    assert len(trip) == 5
    scores = [t["score"] for t in trip]
    assert scores == sorted(scores, reverse=True)
    best = out["scores"][out["valid"]].topk(5).values
    assert torch.allclose(torch.tensor(scores), best)
    boxes = [row.tolist() for row in out["boxes"]]

    def f32(box: list[float]) -> list[float]:
        # Triplet boxes are float32 values written as their shortest decimals.
        return torch.tensor(box, dtype=torch.float32).tolist()

    for t in trip:
        hoi = space.hois[space.hoi_position_by_id(t["hoi_id"])]
        assert (t["verb"], t["object"]) == (hoi.verb, hoi.object)
        assert f32(t["human_box"]) in boxes and f32(t["object_box"]) in boxes
    n_valid = int(out["valid"].sum())
    assert len(to_triplets(out, space, top_k=10_000)) == n_valid
    assert to_triplets(out, space, threshold=1.0) == []


def test_to_triplets_vcoco_agent_only_once_per_human():
    space = labels.load("vcoco")
    k = len(space.hois)
    agent = next(p for p, h in enumerate(space.hois) if h.role is None)
    role = next(p for p, h in enumerate(space.hois) if h.role is not None)
    person, obj = space.human_position, space.object_position("cup")
    # Two pairs of human 0 (with objects 1 and 2): the agent-only class appears once, its best.
    scores = torch.zeros(2, k)
    scores[0, agent], scores[1, agent], scores[1, role] = 0.9, 0.7, 0.8
    out = {
        "pairs": torch.tensor([[0, 1], [0, 2]]),
        "boxes": torch.tensor([[0.0, 0, 10, 10], [5, 5, 20, 20], [1, 1, 4, 4]]),
        "object_labels": torch.tensor([person, obj, obj]),
        "scores": scores,
        "valid": torch.ones(2, k, dtype=torch.bool),
    }
    trip = to_triplets(out, space, top_k=10)
    assert [(t["hoi_id"], t["score"]) for t in trip] == [
        (space.hois[agent].id, pytest.approx(0.9)),
        (space.hois[role].id, pytest.approx(0.8)),
    ]
    assert trip[0]["object_box"] is None and trip[0]["role"] is None and trip[0]["object"] is None
    assert trip[1]["object_box"] == [1.0, 1.0, 4.0, 4.0] and trip[1]["object"] == "cup"
    assert trip[1]["role"] == space.hois[role].role


def test_valid_class_table_packaged_spaces():
    hico = labels.load("hico_det")
    table = valid_class_table(hico)
    bike = hico.object_position("bicycle")
    assert table.shape == (len(hico.objects), 600)
    assert table[bike].tolist() == [h.object == "bicycle" for h in hico.hois]
    assert table.sum(0).tolist() == [1] * 600  # every HICO-DET class names one object
    vcoco = labels.load("vcoco")
    assert valid_class_table(vcoco).all()  # V-COCO classes accept any object


def test_load_model_bad_files(model, tmp_path):
    junk = tmp_path / "junk.pt"
    junk.write_text("not a checkpoint")
    with pytest.raises(CheckpointError, match="junk.pt"):
        load_model(junk, device="cpu")
    with pytest.raises(CheckpointError, match="no such checkpoint"):
        load_model(tmp_path / "missing.pt", device="cpu")
    payload = model_payload(model)
    with pytest.raises(CheckpointError, match="format"):
        load_model({**payload, "format": "other"}, device="cpu")
    bad_cfg = {**payload, "model_config": {**payload["model_config"], "widht": 3}}
    with pytest.raises(CheckpointError, match="model_config.*widht"):
        load_model(bad_cfg, device="cpu")
    wrong = {**payload, "model_config": {**payload["model_config"], "d_pair": 64}}
    with pytest.raises(CheckpointError, match="does not fit"):
        load_model(wrong, device="cpu")


def test_num_heads_must_divide_the_backbone_width(space):
    from linkhoi.model import ConfigError

    cfg = LinkConfig(**{**SMALL, "d_model": 48, "d_pair": 48, "d_latent": 48, "num_heads": 3})
    with pytest.raises(ConfigError, match=r"num_heads=3 does not divide the width C=64"):
        create_model(cfg, space, device="cpu")  # the tiny CLIP's C is 64
