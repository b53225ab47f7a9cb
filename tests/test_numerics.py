"""The relation operator at the edges: second derivatives, extreme scales and zero spread, the same in every
implementation."""

import importlib.util, itertools, os, subprocess, sys

import pytest
import torch

from causal_rn.relation import relation

G = torch.Generator().manual_seed(0)
IMPLS_FOR = {
    "exact": ("naive", "chunked", "auto"),
    "approx": ("naive", "chunked", "linear", "auto"),
    "none": ("naive", "chunked", "linear", "auto"),
}
FORMS = list(itertools.product(("exact", "approx", "none"), ("layer", "rms"), (True, False)))


def inputs(*shape, dtype=torch.float64):
    return [torch.randn(*shape, dtype=dtype, generator=G).requires_grad_() for _ in range(2)]


@pytest.mark.parametrize("prenorm,norm,causal", FORMS)
def test_double_backward_is_exact_in_every_impl(prenorm, norm, causal):
    "gradgradcheck (finite differences of the gradient) for every implementation that computes this form."
    q, p = inputs(1, 4, 3)
    for impl in IMPLS_FOR[prenorm]:
        for act in ("exp", "gelu") if impl != "linear" else ("exp",):
            fn = lambda q, p: relation(q, p, prenorm=prenorm, norm=norm, causal=causal, act=act, impl=impl, chunk=2)
            assert torch.autograd.gradgradcheck(fn, (q, p)), (impl, act)


def test_double_backward_of_the_compiled_tiles_and_stable_form():
    from causal_rn.norms import layer_norm

    q, p = inputs(1, 5, 3)
    assert torch.autograd.gradgradcheck(lambda q, p: relation(q, p, impl="compiled", chunk=2), (q, p))
    assert torch.autograd.gradgradcheck(
        lambda q, p: layer_norm(relation(q, p, impl="chunked", chunk=2, stable=True)), (q, p)
    )
    torch._dynamo.reset()


@pytest.mark.parametrize("prenorm,norm", [("exact", "layer"), ("exact", "rms"), ("approx", "layer"), ("approx", "rms")])
def test_extreme_scales_stay_finite_and_equal(prenorm, norm):
    "The normalised forms are invariant to a common scale: 1e20 and 1e-25 in float32 give the unscaled result."
    q, p = (t.detach().float() for t in inputs(2, 9, 8))
    for impl in IMPLS_FOR[prenorm]:
        ref = relation(q, p, prenorm=prenorm, norm=norm, impl=impl)
        for k in (1e20, 1e30, 1e-25):
            y = relation(q * k, p * k, prenorm=prenorm, norm=norm, impl=impl)
            assert y.isfinite().all(), (impl, k)
            torch.testing.assert_close(y, ref, rtol=1e-5, atol=1e-5)


def test_power_of_two_scales_change_no_bit():
    """Scaling by 2**k is exact in floating point, so the chunked exact operator gives the very same bits, values and
    gradients."""
    q, p = (t.detach().float() for t in inputs(2, 70, 24))
    outs = []
    for k in (1.0, 2.0**-7, 2.0**11):
        qq, pp = (q * k).requires_grad_(), (p * k).requires_grad_()
        y = relation(qq, pp, impl="chunked", chunk=32)
        (y * torch.arange(y.numel()).reshape(y.shape).sin()).sum().backward()
        outs.append((y, qq.grad * k, pp.grad * k))
    for other in outs[1:]:
        for a, b in zip(outs[0], other):
            assert torch.equal(a, b)


def zero_spread_cases():
    z = torch.zeros(2, 5, 6, dtype=torch.float64)
    q = torch.randn(2, 5, 6, dtype=torch.float64, generator=G)
    const = torch.randn(2, 5, 1, dtype=torch.float64, generator=G).expand(2, 5, 6).contiguous()
    return {"all zero": (z, z), "p = -q": (q, -q), "rows constant over H": (const, const * 0.5 + 1)}


@pytest.mark.parametrize("case", list(zero_spread_cases()))
@pytest.mark.parametrize("norm", ["layer", "rms"])
def test_zero_spread_is_the_limit_in_every_impl(case, norm):
    """Zero spread: pre-activation 0 (the eps -> 0+ limit), no NaN, and the same values and gradients from every
    implementation."""
    q0, p0 = zero_spread_cases()[case]
    if norm == "rms" and case == "rows constant over H":
        p0 = -q0  # RMS of a non-zero constant is well defined: cancel instead
    w = torch.randn(*q0.shape, dtype=torch.float64, generator=G)
    for prenorm in ("exact", "approx"):
        results = {}
        for impl in IMPLS_FOR[prenorm]:
            q, p = q0.clone().requires_grad_(), p0.clone().requires_grad_()
            y = relation(q, p, prenorm=prenorm, norm=norm, impl=impl)
            (y * w).sum().backward()
            assert y.isfinite().all() and q.grad.isfinite().all() and p.grad.isfinite().all(), (impl, prenorm)
            results[impl] = (y, q.grad, p.grad)
        ref = results["naive"]
        for impl, got in results.items():
            for a, b in zip(got, ref):
                torch.testing.assert_close(a, b, rtol=1e-9, atol=1e-9, msg=f"{case} {prenorm} {impl}")
        if case == "all zero":  # every pair has zero spread: exp(0) = 1, no gradient
            torch.testing.assert_close(ref[0], torch.ones_like(ref[0]))
            assert not ref[1].any() and not ref[2].any()


def test_float16_overflow_is_refused_not_made_inf():
    q = torch.randn(1, 6, 256, generator=G)
    q[..., 0] = 50.0  # a dominant feature: exp(mu) near e^sqrt(255)
    with pytest.raises(ValueError, match="beyond float16's largest number"):
        relation(q.half(), q.half())
    assert relation(q.half(), q.half(), stable=True).isfinite().all()  # the stable form fits
    assert relation(q.bfloat16(), q.bfloat16()).isfinite().all()  # bfloat16 has float32's range


TRITON_CODE = r"""
import torch
from causal_rn.relation import relation
g = torch.Generator().manual_seed(1)
q, p = (torch.randn(2, 9, 16, generator=g) for _ in range(2))
ref = relation(q, p, impl="chunked")
for k in (1e20, 1e-25):
    y = relation(q * k, p * k, impl="triton")
    assert y.isfinite().all() and (y - ref).abs().max() < 1e-4, k
for q0, p0 in [(torch.zeros(1, 5, 16), torch.zeros(1, 5, 16)), (q[:1], -q[:1])]:
    out = []
    for impl in ("naive", "triton"):
        qq, pp = q0.clone().requires_grad_(), p0.clone().requires_grad_()
        y = relation(qq, pp, impl=impl); y.sum().backward()
        out.append((y, qq.grad, pp.grad))
    for a, b in zip(*out): assert a.isfinite().all() and (a - b).abs().max() < 1e-4, (a, b)
qq, pp = q.clone().requires_grad_(), p.clone().requires_grad_()
gq, = torch.autograd.grad(relation(qq, pp, impl="triton").pow(2).sum(), qq, create_graph=True)
second_triton, = torch.autograd.grad(gq.pow(2).sum(), qq)
qq = q.clone().requires_grad_()
gq, = torch.autograd.grad(relation(qq, pp.detach(), impl="naive").pow(2).sum(), qq, create_graph=True)
second_naive, = torch.autograd.grad(gq.pow(2).sum(), qq)
assert (second_triton - second_naive).abs().max() < 1e-3 * second_naive.abs().max()
try: relation(q.double(), p.double(), impl="triton"); raise AssertionError("float64 accepted")
except TypeError as e: assert "computes in float32" in str(e)
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_edges_under_the_interpreter():
    out = subprocess.run(
        [sys.executable, "-c", TRITON_CODE], env=dict(os.environ, TRITON_INTERPRET="1"), capture_output=True, text=True
    )
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-3000:]


@pytest.mark.parametrize("shape", [(32, 34, 64), (32, 66, 64), (32, 130, 64), (3, 300, 64), (1, 512, 192)])
def test_sharing_tiles_among_threads_changes_no_bit(shape, monkeypatch):
    """The two ways to use threads (parallel ops; tiles shared out when the machine is busy) give the same bits at the
    training shapes."""
    import causal_rn.tiles as R

    if torch.get_num_threads() < 2:
        pytest.skip("one thread: nothing to share")
    out = {}
    for mode in ("ops", "tiles"):
        monkeypatch.setattr(R, "TILE_THREADS", mode)
        gen = torch.Generator().manual_seed(1)
        q, p, w = (torch.randn(*shape, generator=gen) for _ in range(3))
        q.requires_grad_()
        p.requires_grad_()
        y = relation(q, p, impl="chunked", stable=shape[0] == 3)
        (y * w).sum().backward()
        out[mode] = (y.detach(), q.grad, p.grad)
    for a, b in zip(out["ops"], out["tiles"]):
        assert torch.equal(a, b)
    monkeypatch.setattr(R, "TILE_THREADS", "often")
    with pytest.raises(ValueError, match="TILE_THREADS must be one of"):
        relation(q, p, impl="chunked")


def test_the_load_detector_answers():
    from causal_rn.threads import others_busy

    assert isinstance(others_busy(every=0.0), bool)


def test_non_finite_values_are_never_hidden_as_zero_spread():
    "A row with inf or NaN is not 'constant up to rounding': normalising it must not turn the overflow into zeros."
    from causal_rn.norms import centre, flat, layer_norm, rms_norm

    for bad in (float("inf"), -float("inf"), float("nan")):
        row = torch.tensor([[1.0, 2.0, bad]])
        assert not flat(row).any()
        for f in (layer_norm, rms_norm, centre):
            assert not f(row).isfinite().all(), (f.__name__, bad)
    assert not layer_norm(torch.full((1, 4), float("inf"))).isfinite().all()
