"""Property-based tests (hypothesis) over the public API: valid inputs give finite outputs of the right
shape; each kind of invalid input raises a clear error that names the argument and what it expects.

`BAD_INPUTS` below lists every distinct bad input the suite tries (hypothesis varies sizes and values
inside each), `CLI_BAD` every bad option value of the four console commands; `test_bad_inputs_are_counted`
prints how many there are.
"""

import functools, io, math, pickle, subprocess, tempfile, time, zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from causal_rn.checks import NonFiniteError
from causal_rn.copying import autoregressive_predictions, copy_accuracy, copy_batch, tokens_to_text
from causal_rn.model import ModelConfig, build_model, count_params, init_weights, pick_next_token
from causal_rn.relation import relation
from causal_rn.text import ByteTokenizer, encode_splits, lm_batch, load_wikitext103
from causal_rn.vision import channel_stats, digits_data, load_cifar5m, minibatches, patchify, standardise, unpatchify
from causal_rn.vision_experiments import cls_relation_map, heatmaps

FAST = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])
shapes = st.tuples(st.integers(1, 3), st.integers(1, 12), st.integers(2, 9))
forms = st.fixed_dictionaries(
    dict(
        prenorm=st.sampled_from(["exact", "approx", "none"]),
        act=st.sampled_from(["exp", "relu", "elu", "gelu"]),
        causal=st.booleans(),
        impl=st.sampled_from(["auto", "naive", "chunked"]),
    )
)


# ---- valid inputs ------------------------------------------------------------------------------


@FAST
@given(shapes, forms, st.integers(0, 2**31 - 1))
def test_relation_valid_inputs(shape, form, seed):
    g = torch.Generator().manual_seed(seed)
    q, p = torch.randn(*shape, generator=g), torch.randn(*shape, generator=g)
    y = relation(q, p, stable=form["act"] == "exp", **form)
    assert y.shape == q.shape and y.dtype == q.dtype and y.isfinite().all()
    if form["causal"] and shape[1] > 1:  # the future cannot change the past
        q2, p2 = q.clone(), p.clone()
        q2[:, -1] += 1
        p2[:, -1] -= 1
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
    assert (
        (x[:, L + 2 :] == x[:, 1 : L + 1]).all()
        and (y[:, L + 1 : -1] == x[:, 1 : L + 1]).all()
        and (y[:, -1] == 2).all()
    )


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
    t = torch.randn(*shape)
    t.view(-1)[index % t.numel()] = float("nan")
    return t


tiny = lambda **kw: build_model(
    ModelConfig(**{**dict(kind="causal_rn", vocab_size=11, context=16, d_model=8, n_blocks=1), **kw})
)
ids = lambda n, dtype=torch.long: torch.zeros(1, n % 8 + 1, dtype=dtype)
copy_ids = lambda B, T, dtype=torch.long: torch.zeros(B, T, dtype=dtype)


@functools.cache
def _vision():
    "The digits and a tiny Linear BiRN patch classifier for them."
    birn = build_model(
        ModelConfig(
            kind="linear_bi_rn",
            vocab_size=None,
            input="patches",
            patch_dim=4,
            head="classify",
            n_classes=10,
            context=17,
            d_model=8,
            n_blocks=2,
        )
    )
    return digits_data(), birn


def _npy(shape, dtype="|u1", data=b""):
    "A .npy file written by hand: a header for `shape` and `dtype`, then `data`, whatever its length."
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, dict(descr=dtype, fortran_order=False, shape=shape))
    return buf.getvalue() + data


GOOD_Y = _npy((2,), "<i8", np.array([1, 2], dtype="<i8").tobytes())


def _load_part(members: dict | None, unreadable: bool = False):
    "load_cifar5m on a folder whose part 0 is a zip of `members` (None: a folder in its place)."
    with tempfile.TemporaryDirectory() as d:
        part = Path(d) / "cifar5m_part0.npz"
        if members is None:
            part.mkdir()
        else:
            with zipfile.ZipFile(part, "w") as z:
                for name, data in members.items():
                    z.writestr(name, data)
        if not unreadable:
            return load_cifar5m(d, [0])
        with mock.patch.object(Path, "open", side_effect=PermissionError(13, "Permission denied")):
            return load_cifar5m(d, [0])


# name -> (a function of a hypothesis-drawn integer that raises, the exception type, words the message must contain)
BAD_INPUTS = {
    "relation: q of rank 2": (
        lambda n: relation(torch.randn(n + 1, 4), torch.randn(n + 1, 4)),
        ValueError,
        "q must have shape (B, T, H)",
    ),
    "relation: q of rank 4": (
        lambda n: relation(torch.randn(1, n + 1, 2, 4), torch.randn(1, n + 1, 2, 4)),
        ValueError,
        "q must have shape",
    ),
    "relation: integer q": (
        lambda n: relation(torch.ones(1, n + 1, 4, dtype=torch.long), torch.randn(1, n + 1, 4)),
        TypeError,
        "floating-point",
    ),
    "relation: not a tensor": (
        lambda n: relation([[0.0] * 4] * (n + 1), torch.randn(1, n + 1, 4)),
        TypeError,
        "torch.Tensor",
    ),
    "relation: batch mismatch": (
        lambda n: relation(torch.randn(1, 5, 4), torch.randn(n + 2, 5, 4)),
        ValueError,
        "does not broadcast",
    ),
    "relation: length mismatch": (
        lambda n: relation(torch.randn(1, 5, 4), torch.randn(1, n + 6, 4)),
        ValueError,
        "same shape",
    ),
    "relation: feature mismatch": (
        lambda n: relation(torch.randn(1, 5, 4), torch.randn(1, 5, n + 5)),
        ValueError,
        "same shape",
    ),
    "relation: dtype mismatch": (
        lambda n: relation(torch.randn(1, n + 1, 4), torch.randn(1, n + 1, 4).double()),
        TypeError,
        "same dtype",
    ),
    "relation: empty sequence": (
        lambda n: relation(torch.randn(n + 1, 0, 4), torch.randn(n + 1, 0, 4)),
        ValueError,
        "non-empty",
    ),
    "relation: NaN in q": (
        lambda n: relation(_nan_at((2, 6, 4), n), torch.randn(2, 6, 4)),
        ValueError,
        "q contains NaN or inf",
    ),
    "relation: inf in p": (
        lambda n: relation(torch.randn(2, 6, 4), _nan_at((2, 6, 4), n).nan_to_num(nan=math.inf)),
        ValueError,
        "p contains NaN or inf",
    ),
    "relation: unknown prenorm": (lambda n: relation(*_qp(), prenorm=f"norm{n}"), ValueError, "prenorm must be one of"),
    "relation: unknown act": (lambda n: relation(*_qp(), act=f"act{n}"), ValueError, "act must be one of"),
    "relation: unknown impl": (lambda n: relation(*_qp(), impl=f"impl{n}"), ValueError, "impl must be one of"),
    "relation: unknown norm": (lambda n: relation(*_qp(), norm=f"norm{n}"), ValueError, "norm must be"),
    "relation: negative eps": (lambda n: relation(*_qp(), eps=-1.0 - n), ValueError, "eps"),
    "model: id above the vocabulary": (
        lambda n: tiny()(torch.tensor([[0, 11 + n]])),
        ValueError,
        "token ids must lie in [0, 10]",
    ),
    "model: negative id": (lambda n: tiny()(torch.tensor([[-1 - n, 0]])), ValueError, "token ids must lie in [0, 10]"),
    "model: float ids": (lambda n: tiny()(torch.rand(1, n + 1)), TypeError, "integer tensor"),
    "model: ids of rank 1": (lambda n: tiny()(torch.zeros(n + 1, dtype=torch.long)), ValueError, "shape (B, T)"),
    "model: ids of rank 3": (lambda n: tiny()(torch.zeros(1, n + 1, 2, dtype=torch.long)), ValueError, "shape (B, T)"),
    "model: empty sequence": (lambda n: tiny()(torch.zeros(n + 1, 0, dtype=torch.long)), ValueError, "non-empty"),
    "model: past the context": (
        lambda n: tiny()(torch.zeros(1, 17 + n, dtype=torch.long)),
        ValueError,
        "longer than the context of 16",
    ),
    "model: NaN patches": (
        lambda n: tiny(
            kind="linear_bi_rn", input="patches", patch_dim=4, head="classify", n_classes=3, vocab_size=None
        )(_nan_at((1, 5, 4), n)),
        ValueError,
        "patches contain NaN or inf",
    ),
    "model: patches of the wrong width": (
        lambda n: tiny(
            kind="linear_bi_rn", input="patches", patch_dim=4, head="classify", n_classes=3, vocab_size=None
        )(torch.randn(1, 5, 5 + n)),
        ValueError,
        "shape (B, T, 4)",
    ),
    "config: unknown kind": (lambda n: ModelConfig(kind=f"kind{n}").resolved(), ValueError, "kind must be one of"),
    "config: heads do not divide": (
        lambda n: ModelConfig(d_model=8, n_heads=3 + 2 * (n % 2)).resolved(),
        ValueError,
        "must divide",
    ),
    "config: zero blocks": (
        lambda n: ModelConfig(n_blocks=-n).resolved(),
        ValueError,
        "n_blocks must be a positive int",
    ),
    "generate: past the context": (
        lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), 14 + n),
        ValueError,
        "more than the model's 16",
    ),
    "generate: negative count": (
        lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), -1 - n),
        ValueError,
        "max_new_tokens",
    ),
    "generate: negative temperature": (
        lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), 2, temperature=-0.1 - n),
        ValueError,
        "temperature",
    ),
    "generate: top_k beyond the vocabulary": (
        lambda n: tiny().generate(torch.zeros(1, 4, dtype=torch.long), 2, temperature=1.0, top_k=12 + n),
        ValueError,
        "top_k",
    ),
    "copy_batch: batch size < 1": (lambda n: copy_batch(-n, 4), ValueError, "batch_size must be a positive int"),
    "copy_batch: fractional string size": (
        lambda n: copy_batch(2, n + 0.5),
        ValueError,
        "string_size must be a positive int",
    ),
    "lm_batch: text shorter than the window": (
        lambda n: lm_batch(torch.zeros(n + 2, dtype=torch.uint8), 1, n + 2),
        ValueError,
        "fewer than context + 1",
    ),
    "lm_batch: float data": (lambda n: lm_batch(torch.rand(100), 1, n + 1), ValueError, "1-D integer"),
    "tokenizer: byte id above 255": (lambda n: ByteTokenizer().decode([65, 256 + n]), ValueError, "[0, 255]"),
    "patchify: size not divisible": (lambda n: patchify(torch.rand(1, 2 * n + 3, 4, 1), 2), ValueError, "divisible"),
    "patchify: rank 3": (lambda n: patchify(torch.rand(n + 1, 4, 4), 2), ValueError, "(B, H, W, C)"),
    # widths of one feature under LayerNorm (always 0; NaN with eps=0)
    "config: LayerNorm over d_model=1": (
        lambda n: ModelConfig(kind=["transformer", "causal_rn", "linear_bi_rn"][n % 3], d_model=1).resolved(),
        ValueError,
        "LayerNorm over one feature is always 0",
    ),
    "config: one feature per head": (
        lambda n: ModelConfig(d_model=8, n_heads=8, stable=False, prenorm=["exact", "approx"][n % 2]).resolved(),
        ValueError,
        "d_hidden / n_heads",
    ),
    "config: post-norm over d_hidden=1": (
        lambda n: ModelConfig(d_model=n + 2, d_hidden=1, prenorm="none").resolved(),
        ValueError,
        "postnorm=False",
    ),
    "config: fractional d_hidden": (
        lambda n: ModelConfig(d_hidden=n + 0.5).resolved(),
        ValueError,
        "ModelConfig.d_hidden must be a positive int",
    ),
    "config: eps is a bool": (
        lambda n: ModelConfig(eps=bool(n % 2)).resolved(),
        ValueError,
        "ModelConfig.eps must be a finite number",
    ),
    "build_model: a dict": (
        lambda n: build_model(dict(kind="causal_rn", d_model=n + 2)),
        TypeError,
        "cfg must be a ModelConfig, got dict",
    ),
    "count_params: embeddings not a bool": (
        lambda n: count_params(tiny(), embeddings=["no", 1, None][n % 3]),
        TypeError,
        "embeddings must be True or False",
    ),
    "init_weights: NaN std": (lambda n: init_weights(tiny(), std=math.nan), ValueError, "std must be a finite number"),
    # the model's input
    "model: bool ids": (lambda n: tiny()(ids(n, torch.bool)), TypeError, "integer tensor"),
    "model: uint8 id above the vocabulary": (
        lambda n: tiny()(torch.tensor([[0, 11 + n]], dtype=torch.uint8)),
        ValueError,
        "token ids must lie in [0, 10]",
    ),
    "model: negative start": (lambda n: tiny()(ids(n), start=-1 - n), ValueError, "start must be an int >= 0"),
    "model: fractional start": (lambda n: tiny()(ids(n), start=n + 0.5), ValueError, "start must be an int >= 0"),
    "model: caches not dicts": (lambda n: tiny()(ids(n), caches=[n]), ValueError, "one dict per block"),
    "model: ids on another device": (
        lambda n: tiny()(ids(n).to("meta")),
        ValueError,
        "token ids are on meta but the model is on cpu",
    ),
    "model: empty batch of patches": (
        lambda n: tiny(
            kind="linear_bi_rn", input="patches", patch_dim=4, head="classify", n_classes=3, vocab_size=None
        )(torch.randn(0, n + 1, 4)),
        ValueError,
        "patches must be non-empty",
    ),
    # generation and sampling
    "generate: infinite temperature": (
        lambda n: tiny().generate(ids(n), 2, temperature=math.inf),
        ValueError,
        "temperature must be a finite number",
    ),
    "generate: NaN temperature": (
        lambda n: tiny().generate(ids(n), 2, temperature=math.nan),
        ValueError,
        "temperature must be a finite number",
    ),
    "generate: top_k = 0": (
        lambda n: tiny().generate(ids(n), 2, temperature=1.0, top_k=0),
        ValueError,
        "top_k must be a positive int",
    ),
    "generate: top_k a bool": (
        lambda n: tiny().generate(ids(n), 2, temperature=1.0, top_k=True),
        ValueError,
        "top_k must be a positive int",
    ),
    "generate: generator not a Generator": (
        lambda n: tiny().generate(ids(n), 2, temperature=1.0, generator=n),
        TypeError,
        "generator must be None or a torch.Generator",
    ),
    "generate: use_cache not a bool": (
        lambda n: tiny().generate(ids(n), 2, use_cache="no"),
        TypeError,
        "use_cache must be True or False",
    ),
    "generate: prompt of rank 1": (
        lambda n: tiny().generate(torch.zeros(n + 1, dtype=torch.long), 2),
        ValueError,
        "shape (B, T)",
    ),
    "generate: float prompt": (lambda n: tiny().generate(ids(n, torch.float32), 2), TypeError, "integer tensor"),
    "generate: empty prompt": (
        lambda n: tiny().generate(torch.zeros(n + 1, 0, dtype=torch.long), 2),
        ValueError,
        "non-empty",
    ),
    "pick_next_token: negative temperature": (
        lambda n: pick_next_token(torch.randn(2, 5), -0.5 - n),
        ValueError,
        "temperature must be >= 0",
    ),
    "pick_next_token: NaN logits": (
        lambda n: pick_next_token(_nan_at((2, 5), n), 1.0),
        NonFiniteError,
        "logits contain NaN",
    ),
    "pick_next_token: logits of rank 1": (
        lambda n: pick_next_token(torch.randn(n + 2), 1.0),
        ValueError,
        "shape (B, vocab)",
    ),
    # the copying task's metrics
    "copy_accuracy: one sequence (1-D)": (
        lambda n: copy_accuracy(copy_ids(1, 2 * n + 4)[0], copy_ids(1, 2 * n + 4)[0]),
        ValueError,
        "2-D tensor (batch, 2(L+1))",
    ),
    "copy_accuracy: odd length": (
        lambda n: copy_accuracy(copy_ids(2, 2 * n + 5), copy_ids(2, 2 * n + 5)),
        ValueError,
        "even length 2(L+1) >= 4",
    ),
    "copy_accuracy: float predictions": (
        lambda n: copy_accuracy(copy_ids(2, 2 * n + 4, torch.float32), copy_ids(2, 2 * n + 4)),
        TypeError,
        "integer token ids",
    ),
    "copy_accuracy: empty batch": (
        lambda n: copy_accuracy(copy_ids(0, 2 * n + 4), copy_ids(0, 2 * n + 4)),
        ValueError,
        "at least one sequence",
    ),
    "copy_batch: generator not a Generator": (
        lambda n: copy_batch(2, n + 1, generator=str(n)),
        TypeError,
        "generator must be None or a torch.Generator",
    ),
    "copy_batch: unknown device": (
        lambda n: copy_batch(2, n + 1, device=f"tpu{n}"),
        ValueError,
        "device must be a torch device",
    ),
    "tokens_to_text: a batch": (lambda n: tokens_to_text(copy_ids(n + 2, 4)), ValueError, "one sequence"),
    "tokens_to_text: id outside the vocabulary": (
        lambda n: tokens_to_text(torch.tensor([3, 29 + n])),
        ValueError,
        "lie in [-1, 28]",
    ),
    "autoregressive_predictions: one sequence (1-D)": (
        lambda n: autoregressive_predictions(None, copy_ids(1, 2 * n + 4)[0]),
        ValueError,
        "x must be a 2-D tensor",
    ),
    # text
    "load_wikitext103: negative max_chars": (
        lambda n: load_wikitext103("/nowhere", max_chars=-1 - n),
        ValueError,
        "max_chars must be an int >= 0",
    ),
    "load_wikitext103: fractional max_chars": (
        lambda n: load_wikitext103("/nowhere", max_chars=n + 0.5),
        ValueError,
        "max_chars must be an int >= 0",
    ),
    "load_wikitext103: root is a file": (lambda n: load_wikitext103(__file__), ValueError, "is a file, not a folder"),
    "load_wikitext103: unknown split": (
        lambda n: load_wikitext103("/nowhere", f"split{n}"),
        ValueError,
        "split must be one of",
    ),
    "encode_splits: text too short to split": (
        lambda n: encode_splits("ab"[: n % 2]),
        ValueError,
        "leaves an empty training or validation split",
    ),
    "lm_batch: bool data": (lambda n: lm_batch(torch.ones(n + 50, dtype=torch.bool), 1, 4), ValueError, "1-D integer"),
    "tokenizer: bool ids": (
        lambda n: ByteTokenizer().decode(torch.ones(n + 1, dtype=torch.bool)),
        TypeError,
        "integers",
    ),
    "tokenizer: a str": (lambda n: ByteTokenizer().decode("x" * (n + 1)), TypeError, "decode takes byte ids"),
    # vision: arguments
    "patchify: patch 0 or negative": (
        lambda n: patchify(torch.rand(1, 4, 4, 1), -n),
        ValueError,
        "patch must be a positive int",
    ),
    "patchify: patch larger than the images": (
        lambda n: patchify(torch.rand(1, 4, 4, 1), 5 + n),
        ValueError,
        "is larger than the 4x4 images",
    ),
    "patchify: images of zero size": (lambda n: patchify(torch.rand(n + 1, 0, 4, 1), 2), ValueError, "at least 1"),
    "unpatchify: not a tensor": (
        lambda n: unpatchify([[[0.0] * 4]] * (n + 1), 2, 2),
        ValueError,
        "patches must be a tensor",
    ),
    "channel_stats: no images": (
        lambda n: channel_stats(torch.rand(0, n + 1, n + 1, 3)),
        ValueError,
        "non-empty batch",
    ),
    "standardise: zero std": (
        lambda n: standardise(torch.rand(1, 2, 2, 1), torch.zeros(1), torch.zeros(1)),
        ValueError,
        "std > 0",
    ),
    "minibatches: no examples": (
        lambda n: next(minibatches(torch.zeros(0, 1), torch.zeros(0), n + 1, torch.Generator())),
        ValueError,
        "at least one example",
    ),
    "minibatches: no generator": (
        lambda n: next(minibatches(torch.zeros(n + 2, 1), torch.zeros(n + 2), 1, None)),
        TypeError,
        "generator must be a torch.Generator",
    ),
    "load_cifar5m: a part twice": (lambda n: load_cifar5m("/nowhere", [n % 6, n % 6]), ValueError, "more than once"),
    "load_cifar5m: parts not a list": (
        lambda n: load_cifar5m("/nowhere", n % 6),
        ValueError,
        "parts must be a non-empty list",
    ),
    "load_cifar5m: root is a file": (lambda n: load_cifar5m(__file__, [0]), ValueError, "is a file, not a folder"),
    # vision: files written by hand
    "cifar: a header that claims 10^12 images": (
        lambda n: _load_part({"X.npy": _npy((10**12 + n, 32, 32, 3), data=b"\0" * 64), "Y.npy": GOOD_Y}),
        ValueError,
        "claims shape",
    ),
    "cifar: a raw pickle member": (
        lambda n: _load_part({"X": pickle.dumps(np.zeros((n + 1, 32, 32, 3), np.uint8)), "Y.npy": GOOD_Y}),
        ValueError,
        "not a NumPy .npy array",
    ),
    "cifar: an object array": (
        lambda n: _load_part({"X.npy": _npy((2, 32, 32, 3), data=bytes(6144)), "Y.npy": _npy((n + 1,), "|O", b"x")}),
        ValueError,
        "holds Python objects",
    ),
    "cifar: a part with no images": (
        lambda n: _load_part({"X.npy": _npy((0, 32, 32, 3)), "Y.npy": _npy((0,), "<i8")}),
        ValueError,
        "holds no images",
    ),
    "cifar: a folder where the part should be": (lambda n: _load_part(None), ValueError, "is a folder, not a file"),
    "cifar: a part that cannot be read": (
        lambda n: _load_part({"X.npy": b"", "Y.npy": GOOD_Y}, unreadable=True),
        ValueError,
        "cannot be read (PermissionError",
    ),
    # heat maps
    "heatmaps: no layers": (
        lambda n: heatmaps(_vision()[1], _vision()[0], _vision()[0].test_images[: n + 1], layers=[]),
        ValueError,
        "non-empty list of block indices",
    ),
    "heatmaps: images of another size": (
        lambda n: heatmaps(_vision()[1], _vision()[0], torch.rand(n + 1, 6, 6, 1)),
        ValueError,
        "stored images (N, 8, 8, 1)",
    ),
    "cls_relation_map: layer out of range": (
        lambda n: cls_relation_map(_vision()[1], torch.randn(1, 16, 4), 2 + n),
        IndexError,
        "block index from -2 to 1",
    ),
}


@pytest.mark.parametrize("name", list(BAD_INPUTS))
@settings(max_examples=5, deadline=None)
@given(n=st.integers(0, 50))
def test_bad_input_raises_a_clear_error(name, n):
    f, kind, words = BAD_INPUTS[name]
    with pytest.raises(kind) as info:
        f(n)
    assert words in str(info.value), f"{name}: the message {str(info.value)!r} does not say {words!r}"


# command -> [(bad options, words the last stderr line must contain)]; "{file}" stands for an existing file
CLI_BAD = {
    "causal-rn-copy": [
        (["--kind", "attention"], "kind"),
        (["--preset", "gpu"], "preset"),
        (["--act", "tanh"], "act"),
        (["--prenorm", "exactly"], "prenorm"),
        (["--string_size", "0"], "string_size"),
        (["--schedule", "linear"], "schedule"),
        (["--device", "tpu"], "device"),
        (["--stop_accuracy", "1.5"], "stop_accuracy"),
        (["--norm", "batch"], "norm"),
        (["--d_model", "1"], "LayerNorm over one feature"),
        (["--n_blocks", "0"], "n_blocks"),
        (["--d_hidden", "0"], "d_hidden"),
        (["--batch_size", "0"], "batch_size"),
        (["--stop_patience", "0"], "stop_patience"),
        (["--eval_batch", "0"], "eval_batch"),
        (["--lr", "nan"], "lr must be a finite number"),
        (["--seed", "-1"], "seed"),
        (["--warmup", "-1"], "warmup"),
        (["--weight_decay", "-1"], "weight_decay"),
        (["--betas", "2,3"], "betas"),
        (["--postnorm", "maybe"], "postnorm"),
        (["--checkpoint_every", "0"], "checkpoint_every"),
        (["--min_lr", "-1"], "min_lr"),
        (["--dist_timeout", "0"], "dist_timeout"),
        (["--out", "{file}"], "is not a folder"),
    ],
    "causal-rn-lm": [
        (["--kind", "bi_rn"], "--kind"),
        (["--corpus", "nope"], "corpus must be one of"),
        (["--corpus", "{missing}.txt"], "cannot read the corpus"),
        (["--corpus", "{short}.txt"], "fewer than context + 1"),
        (["--context", "0"], "context"),
        (["--batch_size", "0"], "batch_size"),
        (["--eval_batches", "0"], "eval_batches"),
        (["--corpus", "wikitext-103"], "needs data="),
        (["--corpus", "wikitext-103", "--data", "{missing}"], "not found"),
        (["--corpus", "wikitext-103", "--data", "{file}"], "is a file, not a folder"),
        (["--d_model", "1"], "LayerNorm over one feature"),
    ],
    "causal-rn-vision": [
        (["--kind", "causal_rn"], "--kind"),
        (["--data", "imagenet"], "data must be one of"),
        (["--data", "cifar5m"], "needs data_dir="),
        (["--data", "cifar5m", "--data_dir", "{missing}"], "no such folder"),
        (["--data", "cifar5m", "--data_dir", "{file}"], "is a file, not a folder"),
        (["--data", "cifar5m", "--data_dir", "{cifar}"], "claims shape"),
        (["--batch_size", "0"], "batch_size"),
        (["--eval_batch", "0"], "eval_batch"),
        (["--batch_size", "5000"], "more than the 1438 training images"),
        (["--d_model", "1"], "LayerNorm over one feature"),
        (["--prenorm", "exactly"], "prenorm"),
    ],
    "causal-rn-bench": [
        (["--repeats", "-1"], "--repeats must be a positive int"),
        (["--repeats", "0"], "--repeats must be a positive int"),
        (["--mem_limit_gb", "0.01"], "--mem_limit_gb must be at least 1"),
        (["--mem_limit_gb", "nan"], "--mem_limit_gb must be a finite number"),
        (["--device", "tpu"], "--device must be one of"),
        (["--providers", "chunked,fast"], "unknown providers ['fast']"),
        (["--providers", "chunked"], "keep it in providers"),
        (["--repeats", "abc"], "--repeats"),
    ],
}
TAIL = {"causal-rn-bench": ["--quick", "--out", "{out}"]}  # what follows the bad options
TAIL_TRAIN = ["--iterations", "1", "--quiet"]  # were the bad value accepted, a short run


@pytest.mark.parametrize("command,i", [(c, i) for c, cases in CLI_BAD.items() for i in range(len(cases))])
def test_cli_rejects_bad_option_values(tmp_path, command, i):
    "Every command refuses every bad value before any work: a non-zero exit well under 30 s, one line that says why."
    options, words = CLI_BAD[command][i]
    (tmp_path / "file").write_text("x")
    (tmp_path / "short.txt").write_text("short")
    cifar = tmp_path / "cifar"
    cifar.mkdir()
    with zipfile.ZipFile(cifar / "cifar5m_part0.npz", "w") as z:  # a damaged part 0, parts 1-4 present
        z.writestr("X.npy", _npy((10**12, 32, 32, 3), data=b"\0" * 64))
        z.writestr("Y.npy", GOOD_Y)
    for part in range(1, 5):
        (cifar / f"cifar5m_part{part}.npz").write_bytes(b"")
    paths = dict(
        file=tmp_path / "file",
        missing=tmp_path / "missing",
        short=tmp_path / "short",
        cifar=cifar,
        out=tmp_path / "out.json",
    )
    args = [a.format(**paths) for a in options + TAIL.get(command, TAIL_TRAIN)]
    t0 = time.perf_counter()
    r = subprocess.run([command, *args], capture_output=True, text=True, timeout=120)
    seconds = time.perf_counter() - t0
    assert r.returncode != 0, f"{command} {args} was accepted: {r.stdout[-300:]}"
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith(f"{command}:") and words in last, last
    assert seconds < 30, f"{command} {args} took {seconds:.0f} s to refuse"
    assert not (tmp_path / "out.json").exists()


def test_bad_inputs_are_counted():
    n_cli = sum(len(cases) for cases in CLI_BAD.values())
    print(
        f"\n{len(BAD_INPUTS)} kinds of bad input to the API and {n_cli} bad option values of {len(CLI_BAD)} commands, "
        "each with a clear error"
    )
    assert len(BAD_INPUTS) >= 100 and n_cli >= 50
