"The public API contract of causal_rn.relation, checked on the installed package."

import dataclasses, importlib.metadata, inspect, math, subprocess, sys, zlib

import pytest
import torch

from causal_rn.checks import NonFiniteError
from causal_rn.relation import RelationSpec, relation, relation_rows


def test_relation_signature_matches_contract():
    params = inspect.signature(relation).parameters
    assert list(params)[:2] == ["q", "p"]
    expected = dict(prenorm="exact", act="exp", causal=True, norm="layer", eps=0.0, stable=False, impl="auto")
    for name, default in expected.items():
        assert params[name].kind is inspect.Parameter.KEYWORD_ONLY, name
        assert params[name].default == default, name


def test_import_needs_no_notebook_tools():
    code = (
        "import sys, causal_rn, causal_rn.literal, causal_rn.factorised, causal_rn.linearisation, "
        "causal_rn.norms, causal_rn.relation, causal_rn.benchmark, causal_rn.blocks, causal_rn.model\n"
        "bad = [m for m in ('nbdev', 'IPython', 'jupyterlab', 'ipywidgets', 'execnb') if m in sys.modules]\n"
        "assert not bad, bad"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_runtime_requirements_exclude_dev_tools():
    reqs = importlib.metadata.requires("causal_rn") or []
    runtime = [r for r in reqs if "extra ==" not in r]
    names = {r.split(";")[0].split(">")[0].split("<")[0].split("=")[0].strip().lower() for r in runtime}
    assert "torch" in names and not names & {"nbdev", "jupyterlab", "ipywidgets", "pytest"}, names


@pytest.mark.parametrize(
    "prenorm,act,impl",
    [("exact", "exp", "chunked"), ("approx", "exp", "linear"), ("none", "gelu", "chunked"), ("exact", "elu", "naive")],
)
def test_random_shapes_agree_with_naive(prenorm, act, impl):
    "Random shapes and tile sizes, float64: every impl equals the materialised reference, values and gradients."
    g = torch.Generator().manual_seed(zlib.crc32(f"{prenorm}-{act}-{impl}".encode()))  # the same shapes every run
    for _ in range(12):
        B, T, H = (int(torch.randint(lo, hi, (1,), generator=g)) for lo, hi in [(1, 4), (1, 40), (2, 24)])
        causal = bool(torch.randint(0, 2, (1,), generator=g))
        chunk = int(torch.randint(1, T + 3, (1,), generator=g)) if impl == "chunked" else None
        q = torch.randn(B, T, H, dtype=torch.float64, generator=g, requires_grad=True)
        p = torch.randn(B, T, H, dtype=torch.float64, generator=g, requires_grad=True)
        w = torch.randn(B, T, H, dtype=torch.float64, generator=g)
        kw = dict(prenorm=prenorm, act=act, causal=causal)
        y = relation(q, p, impl=impl, chunk=chunk, **kw)
        gq, gp = torch.autograd.grad((y * w).sum(), (q, p))
        y0 = relation(q, p, impl="naive", **kw)
        gq0, gp0 = torch.autograd.grad((y0 * w).sum(), (q, p))
        for a, b in [(y, y0), (gq, gq0), (gp, gp0)]:
            # Relative to the tensor's scale, with a floor: LayerNorm over H = 2 features is piecewise constant, so
            # its true gradient is 0 and both implementations return rounding noise of about 1e-11 to 1e-9.
            torch.testing.assert_close(a, b, rtol=1e-8, atol=1e-8 * max(b.abs().max().item(), 1.0))


@pytest.mark.parametrize(
    "kwargs,message",
    [
        (dict(prenorm="Exact"), "prenorm must be one of"),
        (dict(impl="triton"), "use impl='chunked'"),
        (dict(impl="linear"), "does not factorise"),
        (dict(act="relu", stable=True), "use stable=False"),
    ],
)
def test_bad_options_name_the_problem(kwargs, message):
    q = torch.randn(1, 4, 3)
    with pytest.raises((ValueError, TypeError, NotImplementedError), match=message.replace("(", r"\(")):
        relation(q, q.clone(), **kwargs)


def test_relation_spec_is_frozen_and_checked_once():
    spec = RelationSpec(prenorm="approx", causal=False)
    with pytest.raises(dataclasses.FrozenInstanceError):
        spec.causal = True
    assert spec == RelationSpec(prenorm="approx", causal=False) and hash(spec) == hash(
        RelationSpec("approx", causal=False)
    )
    assert spec.decomposable and not RelationSpec().decomposable
    assert dataclasses.replace(spec, prenorm="exact") == RelationSpec(causal=False)


@pytest.mark.parametrize(
    "kwargs,exception,message",
    [
        (dict(causal="False"), TypeError, "causal must be True or False, got 'False'"),
        (dict(causal=1), TypeError, "causal must be True or False"),
        (dict(stable=None), TypeError, "stable must be True or False"),
        (dict(eps=math.inf), ValueError, "eps must be a finite number, got inf"),
        (dict(eps=-1e-3), ValueError, "eps must be >= 0"),
        (dict(eps="0"), ValueError, "eps must be a finite number"),
        (dict(prenorm="Exact"), ValueError, "prenorm must be one of"),
        (dict(act="tanh"), ValueError, "act must be one of"),
        (dict(norm="batch"), ValueError, "norm must be one of"),
        (dict(act="elu", stable=True), ValueError, "use stable=False"),
    ],
)
def test_relation_spec_refuses_bad_options_naming_them(kwargs, exception, message):
    with pytest.raises(exception, match=message.replace("(", r"\(")):
        RelationSpec(**kwargs)
    q = torch.randn(1, 4, 3)
    with pytest.raises(exception, match=message.replace("(", r"\(")):  # relation() builds the same spec
        relation(q, q.clone(), **kwargs)


@pytest.mark.parametrize(
    "kwargs",
    [
        dict(),
        dict(causal=False, stable=True),
        dict(prenorm="approx", norm="rms", eps=0.5),
        dict(prenorm="none", act="relu"),
    ],
)
def test_keywords_and_spec_give_the_same_relation(kwargs):
    g = torch.Generator().manual_seed(1)
    q, p = torch.randn(2, 7, 5, generator=g), torch.randn(2, 7, 5, generator=g)
    spec = RelationSpec(**kwargs)
    for impl in ("naive", "chunked", "auto"):
        assert torch.equal(relation(q, p, impl=impl, spec=spec), relation(q, p, impl=impl, **kwargs))
    assert torch.equal(relation_rows(q[:, -2:], p, spec=spec), relation_rows(q[:, -2:], p, **kwargs))
    with pytest.raises(ValueError, match="not both"):
        relation(q, p, spec=spec, eps=0.25)  # a keyword away from its default beside a spec


def test_non_finite_inputs_raise_their_own_value_error():
    q = torch.randn(1, 4, 3)
    with pytest.raises(NonFiniteError, match="q contains NaN or inf"):
        relation(q.masked_fill(q > 0, math.nan), q.clone())
    assert issubclass(NonFiniteError, ValueError)
