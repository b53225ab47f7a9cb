"""Property-based tests (hypothesis) over the public API: valid inputs give finite outputs of the right
shape; each kind of invalid input raises a clear error that names the argument and what it expects.

`BAD_INPUTS` below lists every distinct bad input the suite tries (hypothesis varies sizes and values
inside each); `test_bad_inputs_are_counted` prints how many there are.
"""
import math, subprocess

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from causal_rn.copying import copy_batch
from causal_rn.model import ModelConfig, build_model
from causal_rn.relation import relation
from causal_rn.text import ByteTokenizer, lm_batch
from causal_rn.vision import patchify, unpatchify

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(2, 9))
forms = st.fixed_dictionaries(dict(prenorm=st.sampled_from(["exact", "approx", "none"]),
                                   act=st.sampled_from(["exp", "relu", "elu", "gelu"]), causal=st.booleans(),
                                   impl=st.sampled_from(["auto", "naive", "chunked"])))


# ---- valid inputs ------------------------------------------------------------------------------

@FAST
@given(shapes, forms, st.integers(0, 2**31 - 1))
def test_relation_valid_inputs(shape, form, seed):
    g = torch.Generator().manual_seed(seed)
    q, p = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    y = relation(q, p, stable=form["act"] == "exp", **form)
    assert y.shape == q.shape and y.dtype == q.dtype and y.isfinite().all()
    if form["causal"] and shape[1] > 1:                     # the future cannot change the past
        q2, p2 = q.clone(), p.clone(); q2[:, -1] += 1; p2[:, -1] -= 1
        y2 = relation(q2, p2, stable=form["act"] == "exp", **form)
        torch.testing.assert_close(y2[:, :-1], y[:, :-1])


kinds = st.sampled_from(["causal_rn", "linear_causal_rn", "transformer", "linear_transformer"])

@FAST
@given(kinds, st.integers(1, 3), st.integers(1, 10), st.integers(0, 6), st.integers(0, 2**31 - 1))
def test_model_forward_and_generate(kind, B, T, new, seed):
    torch.manual_seed(seed)
    model = build_model(ModelConfig(kind=kind, vocab_size=11, context=16, d_model=8, n_blocks=2)).eval()
    ids = torch.randint(0, 11, (B, T))
    logits = model(ids)
    assert logits.shape == (B, T, 11) and logits.isfinite().all()
    if T + new - 1 <= 16:
        out = model.generate(ids, new)
        assert out.shape == (B, T + new) and (out[:, :T] == ids).all() and out.min() >= 0 and out.max() < 11


@FAST
@given(st.integers(1, 40), st.integers(1, 30), st.integers(0, 2**31 - 1))
def test_copy_batch(B, L, seed):
    x, y = copy_batch(B, L, torch.Generator().manual_seed(seed))
    assert x.shape == y.shape == (B, 2 * (L + 1))
    assert (x[:, L + 2:] == x[:, 1:L + 1]).all() and (y[:, L + 1:-1] == x[:, 1:L + 1]).all() and (y[:, -1] == 2).all()


@settings(max_examples=200, deadline=None)
@given(st.text())
def test_tokenizer_round_trips_any_text(text):
    tok = ByteTokenizer()
    assert tok.decode(tok.encode(text)) == text


@FAST
@given(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3), st.sampled_from([1, 2, 4]))
def test_patchify_round_trip(B, h, w, C, patch):
    images = torch.rand(B, h * patch, w * patch, C)
    patches = patchify(images, patch)
    assert patches.shape == (B, h * w, patch * patch * C)
    torch.testing.assert_close(unpatchify(patches, h * patch, w * patch, patch), images)


# ---- invalid inputs --------------------------------------------------------------------------

def _qp(shape=(2, 6, 4)):
    return torch.randn(*shape), torch.randn(*shape)

def _nan_at(shape, index):
    t = torch.randn(*shape); t.view(-1)[index % t.numel()] = float("nan"); return t

tiny = lambda **kw: build_model(ModelConfig(**{**dict(kind="causal_rn", vocab_size=11, context=16, d_model=8, n_blocks=1), **kw}))

# name -> (a function of a hypothesis-drawn integer that raises, the exception type, words the message must contain)
BAD_INPUTS = {
    "relation: q of rank 2": (lambda n: relation(torch.randn(n + 1, 4), torch.randn(n + 1, 4)), ValueError, "q must have shape (B, T, H)"),
    "relation: q of rank 4": (lambda n: relation(torch.randn(1, n + 1, 2, 4), torch.randn(1, n + 1, 2, 4)), ValueError, "q must have shape"),
    "relation: integer q": (lambda n: relation(torch.ones(1, n + 1, 4, dtype=torch.long), torch.randn(1, n + 1, 4)), TypeError, "floating-point"),
    "relation: not a tensor": (lambda n: relation([[0.0] * 4] * (n + 1), torch.randn(1, n + 1, 4)), TypeError, "torch.Tensor"),
    "relation: batch mismatch": (lambda n: relation(torch.randn(1, 5, 4), torch.randn(n + 2, 5, 4)), ValueError, "does not broadcast"),
    "relation: length mismatch": (lambda n: relation(torch.randn(1, 5, 4), torch.randn(1, n + 6, 4)), ValueError, "same shape"),
    "relation: feature mismatch": (lambda n: relation(torch.randn(1, 5, 4), torch.randn(1, 5, n + 5)), ValueError, "same shape"),
    "relation: dtype mismatch": (lambda n: relation(torch.randn(1, n + 1, 4), torch.randn(1, n + 1, 4).double()), TypeError, "same dtype"),
    "relation: empty sequence": (lambda n: relation(torch.randn(n + 1, 0, 4), torch.randn(n + 1, 0, 4)), ValueError, "non-empty"),
    "relation: NaN in q": (lambda n: relation(_nan_at((2, 6, 4), n), torch.randn(2, 6, 4)), ValueError, "q contains NaN or inf"),
    "relation: inf in p": (lambda n: relation(torch.randn(2, 6, 4), _nan_at((2, 6, 4), n).nan_to_num(nan=math.inf)), ValueError, "p contains NaN or inf"),
    "relation: unknown prenorm": (lambda n: relation(*_qp(), prenorm=f"norm{n}"), ValueError, "prenorm must be one of"),
    "relation: unknown act": (lambda n: relation(*_qp(), act=f"act{n}"), ValueError, "act must be one of"),
    "relation: unknown impl": (lambda n: relation(*_qp(), impl=f"impl{n}"), ValueError, "impl must be one of"),
    "relation: unknown norm": (lambda n: relation(*_qp(), norm=f"norm{n}"), ValueError, "norm must be"),
    "relation: negative eps": (lambda n: relation(*_qp(), eps=-1.0 - n), ValueError, "eps"),
    "model: id above the vocabulary": (lambda n: tiny()(torch.tensor([[0, 11 + n]])), ValueError, "token ids must lie in [0, 10]"),
    "model: negative id": (lambda n: tiny()(torch.tensor([[-1 - n, 0]])), ValueError, "token ids must lie in [0, 10]"),
    "model: float ids": (lambda n: tiny()(torch.rand(1, n + 1)), TypeError, "integer tensor"),
    "model: ids of rank 1": (lambda n: tiny()(torch.zeros(n + 1, dtype=torch.long)), ValueError, "shape (B, T)"),
    "model: ids of rank 3": (lambda n: tiny()(torch.zeros(1, n + 1, 2, dtype=torch.long)), ValueError, "shape (B, T)"),
    "model: empty sequence": (lambda n: tiny()(torch.zeros(n + 1, 0, dtype=torch.long)), ValueError, "non-empty"),
    "model: past the context": (lambda n: tiny()(torch.zeros(1, 17 + n, dtype=torch.long)), ValueError, "longer than the context of 16"),
    "model: NaN patches": (lambda n: tiny(kind="linear_bi_rn", input="patches", patch_dim=4, head="classify", n_classes=3,
                                          vocab_size=None)(_nan_at((1, 5, 4), n)), ValueError, "patches contain NaN or inf"),
    "model: patches of the wrong width": (lambda n: tiny(kind="linear_bi_rn", input="patches", patch_dim=4, head="classify", n_classes=3,
                                                         vocab_size=None)(torch.randn(1, 5, 5 + n)), ValueError, "shape (B, T, 4)"),
    "config: unknown kind": (lambda n: ModelConfig(kind=f"kind{n}").resolved(), ValueError, "kind must be one of"),
    "config: heads do not divide": (lambda n: ModelConfig(d_model=8, n_heads=3 + 2 * (n % 2)).resolved(), ValueError, "must divide"),
    "config: zero blocks": (lambda n: ModelConfig(n_blocks=-n).resolved(), ValueError, "n_blocks must be a positive int"),
    "generate: past the context": (lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), 14 + n), ValueError, "more than the model's 16"),
    "generate: negative count": (lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), -1 - n), ValueError, "max_new_tokens"),
    "generate: negative temperature": (lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), 2, temperature=-0.1 - n), ValueError, "temperature"),
    "generate: top_k beyond the vocabulary": (lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), 2, temperature=1.0, top_k=12 + n), ValueError, "top_k"),
    "copy_batch: batch size < 1": (lambda n: copy_batch(-n, 4), ValueError, "batch_size must be a positive int"),
    "copy_batch: fractional string size": (lambda n: copy_batch(2, n + 0.5), ValueError, "string_size must be a positive int"),
    "lm_batch: text shorter than the window": (lambda n: lm_batch(torch.zeros(n + 2, dtype=torch.uint8), 1, n + 2), ValueError, "fewer than context + 1"),
    "lm_batch: float data": (lambda n: lm_batch(torch.rand(100), 1, n + 1), ValueError, "1-D integer"),
    "tokenizer: byte id above 255": (lambda n: ByteTokenizer().decode([65, 256 + n]), ValueError, "[0, 255]"),
    "patchify: size not divisible": (lambda n: patchify(torch.rand(1, 2 * n + 3, 4, 1), 2), ValueError, "divisible"),
    "patchify: rank 3": (lambda n: patchify(torch.rand(n + 1, 4, 4), 2), ValueError, "(B, H, W, C)"),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
@settings(max_examples=5, deadline=None)
@given(n=st.integers(0, 50))
def test_bad_input_raises_a_clear_error(name, n):
    f, kind, words = BAD_INPUTS[name]
    with pytest.raises(kind) as info: f(n)
    assert words in str(info.value), f"{name}: the message {str(info.value)!r} does not say {words!r}"


CLI_BAD = {"--kind": "attention", "--preset": "gpu", "--act": "tanh", "--prenorm": "exactly", "--string_size": "0",
           "--schedule": "linear", "--device": "tpu", "--stop_accuracy": "1.5", "--norm": "batch"}

@pytest.mark.parametrize("option", list(CLI_BAD))
def test_cli_rejects_bad_option_values(option):
    r = subprocess.run(["causal-rn-copy", option, CLI_BAD[option], "--iterations", "1", "--quiet"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode != 0
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("causal-rn-copy:") and option.strip("-").split("_")[0] in last, last


def test_bad_inputs_are_counted():
    print(f"\n{len(BAD_INPUTS)} kinds of bad input to the API and {len(CLI_BAD)} bad CLI option values, each with a clear error")
    assert len(BAD_INPUTS) + len(CLI_BAD) >= 40
