"""Prompts per HOI class, CLIP text embeddings, their disk cache and user prompts."""

from __future__ import annotations

import open_clip
import pytest
import torch
import torch.nn.functional as F

import linkhoi.labels as labels
from linkhoi.model import text
from linkhoi.model.backbone import ClipBackbone, load_clip

torch.set_num_threads(1)


@pytest.fixture(scope="module")
def tiny():
    return load_clip("tiny", None, device="cpu")


@pytest.fixture()
def small_space():
    return labels.label_space_from_user_dict(
        {
            "name": "toy",
            "verbs": ["ride", "hold", "no_interaction"],
            "objects": ["person", "horse", "umbrella"],
            "hois": [
                {"verb": "ride", "object": "horse"},
                {"verb": "hold", "object": "umbrella"},
                {"verb": "no_interaction", "object": "horse"},
            ],
        }
    )


def _find(space, verb, obj=None):
    return next(i for i, h in enumerate(space.hois) if h.verb == verb and h.object == obj)


def test_hico_prompts():
    space = labels.load("hico_det")
    prompts = text.build_prompts(space, "hico")
    assert len(prompts) == 600
    assert prompts[_find(space, "ride", "horse")] == "a photo of a person riding a horse"
    assert prompts[_find(space, "board", "airplane")] == "a photo of a person boarding an airplane"
    assert (
        prompts[_find(space, "no_interaction", "airplane")] == "a photo of a person and an airplane"
    )
    assert prompts[_find(space, "hop_on", "bicycle")] == "a photo of a person hopping on a bicycle"
    assert (
        prompts[_find(space, "operate", "hair_drier")]
        == "a photo of a person operating a hair drier"
    )
    assert text.build_prompts(space, "auto") == prompts


def test_vcoco_and_swig_prompts():
    vcoco = labels.load("vcoco")
    prompts = text.build_prompts(vcoco, "auto")
    hold = next(i for i, h in enumerate(vcoco.hois) if h.verb == "hold")
    stand = next(i for i, h in enumerate(vcoco.hois) if h.verb == "stand")
    assert prompts[hold] == "a photo of a person holding an object"
    assert prompts[stand] == "a photo of a person standing"  # agent-only action: no object
    swig = labels.load("swig_hoi")
    first = swig.hois[0]  # verbs are -ing forms already ("injecting syringe")
    obj = first.object.replace("_", " ")
    article = "an" if obj[0] in "aeiou" else "a"
    expected = f"a photo of a person {first.verb.replace('_', ' ')} {article} {obj}"
    assert text.build_prompts(swig, "auto")[0] == expected


def test_custom_template_and_unknown_template(small_space):
    prompts = text.build_prompts(small_space, "{ing} {a} {object}")
    assert prompts == ["riding a horse", "holding an umbrella", "not interacting with a horse"]
    with pytest.raises(ValueError, match="unknown prompt template"):
        text.build_prompts(small_space, "coco")


def test_encode_text_is_normalised_clip_text_features(tiny):
    model, _ = tiny
    prompts = ["a photo of a person riding a horse", "a photo of a person and a cup", "x"]
    emb = text.encode_text(model, prompts)
    assert emb.shape == (3, 64) and emb.dtype == torch.float32
    assert torch.allclose(emb.norm(dim=-1), torch.ones(3), atol=1e-6)
    with torch.no_grad():
        ref = F.normalize(model.encode_text(open_clip.tokenize(prompts)), dim=-1)
    assert torch.allclose(emb, ref, atol=1e-6)
    # Batching does not change the result; a ClipBackbone is accepted as the model.
    assert torch.allclose(text.encode_text(model, prompts, batch_size=1), emb, atol=1e-6)
    assert torch.allclose(text.encode_text(ClipBackbone(*tiny), prompts), emb, atol=1e-6)


def test_text_embeddings_cached_on_disk(tiny, small_space, tmp_path, monkeypatch):
    model, info = tiny
    calls = []
    real = text.encode_text

    def counting(clip_model, prompts, batch_size=64):
        calls.append(list(prompts))
        return real(clip_model, prompts, batch_size)

    monkeypatch.setattr(text, "encode_text", counting)
    first = text.text_embeddings(model, info, small_space, cache_dir=tmp_path)
    assert first.shape == (3, 64) and len(calls) == 1
    assert calls[0][2] == "a photo of a person and a horse"
    second = text.text_embeddings(model, info, small_space, cache_dir=tmp_path)
    assert len(calls) == 1 and torch.equal(first, second)
    assert len(list((tmp_path / "text").glob("toy-*.safetensors"))) == 1
    # Any part of the key changing forces a new encoding.
    text.text_embeddings(model, info, small_space, template="{ing} {object}", cache_dir=tmp_path)
    text.text_embeddings(model, {**info, "sha256": "0" * 64}, small_space, cache_dir=tmp_path)
    assert len(calls) == 3
    # The default cache folder is $LINKHOI_CACHE.
    monkeypatch.setenv("LINKHOI_CACHE", str(tmp_path / "env"))
    text.text_embeddings(model, info, small_space)
    assert len(list((tmp_path / "env" / "text").glob("*.safetensors"))) == 1


def test_prompt_embeddings_for_user_classes(tiny):
    model, _ = tiny
    verbs = text.parse_prompt_list(" ride, feeding ,")
    hois = text.parse_hoi_list("ride:horse, hold:umbrella")
    prompts, emb = text.prompt_embeddings(model, verbs, hois)
    assert prompts == [
        "a photo of a person riding an object",
        "a photo of a person feeding an object",
        "a photo of a person riding a horse",
        "a photo of a person holding an umbrella",
    ]
    assert torch.allclose(emb, text.encode_text(model, prompts), atol=1e-6)
    with pytest.raises(ValueError, match="verb:object"):
        text.parse_hoi_list("ride horse")
    with pytest.raises(ValueError, match="at least one"):
        text.prompt_embeddings(model, [], None)
