"relation(impl='triton') through the installed package, on the CPU under Triton's interpreter."

import importlib.util, os, subprocess, sys

import pytest

CODE = r"""
import torch
from causal_rn.relation import relation
g = torch.Generator().manual_seed(0)
for causal, stable, norm in [(True, False, "layer"), (False, True, "rms"), (True, True, "layer")]:
    q, p, w = (torch.randn(2, 21, 24, dtype=torch.float64, generator=g) for _ in range(3))
    q32, p32 = q.float().requires_grad_(), p.float().requires_grad_()
    q64, p64 = q.clone().requires_grad_(), p.clone().requires_grad_()
    y = relation(q32, p32, impl="triton", causal=causal, stable=stable, norm=norm)
    ref = relation(q64, p64, impl="naive", causal=causal, stable=stable, norm=norm)
    (y * w.float()).sum().backward(); (ref * w).sum().backward()
    for a, b in [(y, ref), (q32.grad, q64.grad), (p32.grad, p64.grad)]:
        err = ((a.double() - b).abs().max() / b.abs().max()).item()
        assert err < 2e-5, (causal, stable, norm, err)
print("ok")
"""


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_impl_matches_reference_under_interpreter():
    env = dict(os.environ, TRITON_INTERPRET="1")
    out = subprocess.run([sys.executable, "-c", CODE], env=env, capture_output=True, text=True)
    assert out.returncode == 0 and out.stdout.strip().endswith("ok"), out.stderr[-2000:]


def test_triton_impl_refuses_what_it_cannot_do():
    import torch
    from causal_rn.relation import relation

    q = torch.randn(1, 5, 8)
    with pytest.raises(ValueError, match="exact form only"):
        relation(q, q.clone(), impl="triton", prenorm="approx")
    if os.environ.get("TRITON_INTERPRET") != "1" and importlib.util.find_spec("triton") is not None:
        with pytest.raises(ValueError, match="runs on CUDA tensors"):
            relation(q, q.clone(), impl="triton")


@pytest.mark.skipif(importlib.util.find_spec("triton") is None, reason="triton is not installed")
def test_triton_entry_point_takes_a_checked_spec():
    import torch
    from causal_rn.relation import RelationSpec
    from causal_rn.triton_relation import triton_relation

    q = torch.randn(1, 5, 8)
    with pytest.raises(ValueError, match="exact form only"):
        triton_relation(q, q.clone(), RelationSpec(prenorm="approx"))
    with pytest.raises(TypeError, match="spec must be a RelationSpec"):
        triton_relation(q, q.clone(), dict(causal=False))
    with pytest.raises(ValueError, match="powers of two >= 16"):
        triton_relation(q, q.clone(), RelationSpec(), block_rows=8)
