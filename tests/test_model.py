"The model API contract of causal_rn.model, checked on the installed package."

import dataclasses

import pytest
import torch

from causal_rn.blocks import AttentionBlock, RelationBlock
from causal_rn.model import KINDS, Kind, ModelConfig, build_model, count_params, kind_name


def test_config_fields_match_contract():
    fields = {f.name for f in dataclasses.fields(ModelConfig)}
    assert {
        "kind",
        "vocab_size",
        "context",
        "d_model",
        "d_hidden",
        "n_blocks",
        "n_heads",
        "prenorm",
        "postnorm",
        "act",
        "norm",
    } <= fields
    assert set(KINDS) == {"causal_rn", "linear_causal_rn", "bi_rn", "linear_bi_rn", "transformer", "linear_transformer"}


@pytest.mark.parametrize("kind,expected", [("causal_rn", "1.34M"), ("transformer", "5.33M")])
def test_paper_parameter_counts(kind, expected):
    model = build_model(ModelConfig(kind=kind, vocab_size=29, context=514, d_model=192, d_hidden=None, n_blocks=12))
    assert f"{count_params(model, embeddings=False) / 1e6:.2f}M" == expected
    assert count_params(model, embeddings=True) == count_params(model) + 29 * 192 + 514 * 192


@pytest.mark.parametrize("kind", ["causal_rn", "linear_causal_rn", "transformer", "linear_transformer"])
def test_cached_generation_matches_full_forward(kind):
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=13, context=40, d_model=16, n_blocks=2, n_heads=2)).double()
    prompt = torch.randint(0, 13, (2, 3))
    tokens, logits = model.generate(prompt, 30, return_logits=True)
    assert tokens.shape == (2, 33) and logits.shape == (2, 30, 13)
    torch.testing.assert_close(logits, model(tokens)[:, 2:-1], rtol=1e-6, atol=1e-6)
    assert torch.equal(tokens, model.generate(prompt, 30, use_cache=False))


@pytest.mark.parametrize("kind", KINDS)
def test_every_kind_trains_one_step(kind):
    "Gradients reach every parameter and are finite (float32, the training dtype)."
    torch.manual_seed(0)
    model = build_model(ModelConfig(kind=kind, vocab_size=13, context=24, d_model=16, n_blocks=2))
    idx = torch.randint(0, 13, (4, 24))
    loss = torch.nn.functional.cross_entropy(model(idx).flatten(0, 1), idx.flatten())
    loss.backward()
    for name, p in model.named_parameters():
        assert p.grad is not None and p.grad.isfinite().all(), name


def test_bad_inputs_name_the_problem():
    model = build_model(ModelConfig(vocab_size=13, context=24, d_model=16, n_blocks=1))
    with pytest.raises(ValueError, match=r"must lie in \[0, 12\]"):
        model(torch.tensor([[3, 13]]))
    with pytest.raises(ValueError, match="longer than the context of 24"):
        model(torch.zeros(1, 25, dtype=torch.long))
    with pytest.raises(ValueError, match="cannot generate"):
        build_model(ModelConfig(kind="bi_rn", vocab_size=13, context=24, d_model=16, n_blocks=1)).generate(
            torch.zeros(1, 2, dtype=torch.long), 3
        )
    with pytest.raises(ValueError, match="use kind='causal_rn'"):
        ModelConfig(kind="linear_causal_rn", prenorm="exact").resolved()


def test_kinds_table():
    assert all(isinstance(k, Kind) for k in KINDS.values())
    assert {name: k.label for name, k in KINDS.items()} == {
        "causal_rn": "CausalRN",
        "linear_causal_rn": "Linear CausalRN",
        "bi_rn": "BiRN",
        "linear_bi_rn": "Linear BiRN",
        "transformer": "Transformer",
        "linear_transformer": "Linear Transformer",
    }
    for name, k in KINDS.items():
        assert kind_name(k.block, k.linear, k.causal) == name
        with pytest.raises(dataclasses.FrozenInstanceError):
            k.linear = not k.linear
    assert (
        kind_name("relation", True, True) == "linear_causal_rn"
        and kind_name("attention", True, False) == "linear_transformer"
    )
    with pytest.raises(ValueError, match="no kind has"):
        kind_name("convolution", False, True)


@pytest.mark.parametrize("kind", KINDS)
def test_each_kind_is_built_as_its_row_says(kind):
    row = KINDS[kind]
    model = build_model(ModelConfig(kind=kind, vocab_size=7, context=8, d_model=8, n_blocks=2))
    assert model.cfg.causal == (row.causal is not False)
    for block in model.blocks:
        if row.block == "relation":
            assert isinstance(block, RelationBlock) and block.recurrent == row.linear
            assert block.spec is model.blocks[0].spec and block.spec.causal == model.cfg.causal
        else:
            assert isinstance(block, AttentionBlock) and block.linear == row.linear and block.causal == model.cfg.causal
    if row.causal is not None:  # a fixed direction: the other one is refused, naming the kind to use
        other = kind_name(row.block, row.linear, not row.causal)
        with pytest.raises(ValueError, match=f"use kind='{other}'"):
            ModelConfig(kind=kind, causal=not row.causal).resolved()


@pytest.mark.parametrize(
    "field,value,message",
    [
        ("causal", "False", "ModelConfig.causal must be True or False"),
        ("postnorm", "yes", "ModelConfig.postnorm must be True or False"),
        ("eps", float("inf"), "ModelConfig.eps must be a finite number"),
        ("d_model", 0, "ModelConfig.d_model must be a positive int"),
        ("kind", "rnn", "ModelConfig.kind must be one of"),
        ("input", "pixels", "ModelConfig.input must be one of"),
    ],
)
def test_config_fields_are_checked(field, value, message):
    with pytest.raises((ValueError, TypeError), match=message):
        ModelConfig(**{field: value}).resolved()


@pytest.mark.parametrize(
    "kw,where",
    [
        (dict(kind="transformer", d_model=1, d_hidden=4), "ModelConfig.d_model is 1"),
        (dict(kind="linear_transformer", d_model=1, d_hidden=4), "ModelConfig.d_model is 1"),
        (dict(kind="causal_rn", d_model=1), "ModelConfig.d_model is 1"),
        (dict(kind="linear_causal_rn", d_model=1, eps=1e-5), "ModelConfig.d_model is 1"),  # eps > 0: always 0, not NaN
        (dict(kind="causal_rn", d_model=8, n_heads=8, stable=False), "d_hidden / n_heads"),
        (dict(kind="bi_rn", d_model=8, d_hidden=1, prenorm="none"), "ModelConfig.d_hidden"),
    ],
)
def test_layer_norm_over_one_feature_is_refused(kw, where):
    "LayerNorm over one feature is 0 (NaN when eps=0): refused with norm='layer', built with norm='rms'."
    with pytest.raises(ValueError, match="LayerNorm over one feature is always 0") as e:
        ModelConfig(**kw).resolved()
    assert where in str(e.value) and "norm='rms'" in str(e.value)
    model = build_model(ModelConfig(**kw, norm="rms", vocab_size=7, context=8, n_blocks=1))
    assert model(torch.tensor([[1, 2, 3]])).isfinite().all()


def test_token_ids_of_any_integer_dtype():
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=13, context=24, d_model=16, n_blocks=1))
    ids = torch.tensor([[0, 5, 12, 3]])
    for dtype in (torch.uint8, torch.int8, torch.int16, torch.int32):
        assert torch.equal(model(ids.to(dtype)), model(ids)), dtype
    out = model.generate(ids.to(torch.uint8), 3)
    assert out.dtype == torch.long and torch.equal(out, model.generate(ids, 3))
    for dtype in (torch.bool, torch.float32):
        with pytest.raises(TypeError, match="integer tensor"):
            model(ids.to(dtype))
    with pytest.raises(ValueError, match=r"must lie in \[0, 12\]"):
        model(torch.tensor([[3, 250]], dtype=torch.uint8))


@pytest.mark.parametrize("temperature", [1e-45, 1e-30, 1e-320])
def test_tiny_temperatures_sample_the_argmax_set(temperature):
    from causal_rn.model import pick_next_token

    logits = torch.tensor([[2.0, 7.5, -1.0, 7.5, 7.5 - 1e-5]])  # tokens 1 and 3 tie for the largest
    picks = {pick_next_token(logits, temperature, generator=torch.Generator().manual_seed(s)).item() for s in range(60)}
    assert picks == {1, 3}  # uniform over the tie: the greedy limit
    torch.manual_seed(0)
    model = build_model(ModelConfig(vocab_size=13, context=24, d_model=16, n_blocks=1))
    prompt = torch.randint(0, 13, (2, 3))
    assert torch.equal(
        model.generate(prompt, 5, temperature=temperature, generator=torch.Generator().manual_seed(1)),
        model.generate(prompt, 5),
    )
    for bad in (float("inf"), float("nan"), -1e-45):
        with pytest.raises(ValueError, match="temperature"):
            model.generate(prompt, 2, temperature=bad)


def test_start_and_caches_are_checked_first():
    model = build_model(ModelConfig(vocab_size=13, context=24, d_model=16, n_blocks=2))
    x = torch.tensor([[1, 2]])
    for start in (-2, 1.5, True):
        with pytest.raises(ValueError, match="start must be an int >= 0"):
            model(x, start=start)
    with pytest.raises(ValueError, match="longer than the context of 24"):
        model(x, start=23)
    with pytest.raises(ValueError, match="one dict per block"):
        model(x, caches=[{}, 1])
    with pytest.raises(TypeError, match="cfg must be a ModelConfig"):
        build_model(dict(kind="causal_rn"))
    with pytest.raises(TypeError, match="embeddings must be True or False"):
        count_params(model, embeddings="no")
