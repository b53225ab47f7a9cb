"The chunked exact relation runs forward and backward in bounded memory (no (B, T, T, H) tensor)."

import subprocess, sys

import pytest

CODE = r"""
import torch
from causal_rn.benchmark import peak_memory_mb, reset_peak_memory
from causal_rn.relation import relation
B, T, H = 1, 2048, 64
q, p, g = (torch.randn(B, T, H, requires_grad=True) for _ in range(3))
relation(q[:, :64], p[:, :64], impl="chunked").backward(g[:, :64])   # start thread pools and autograd first
base = reset_peak_memory()
relation(q, p, impl="chunked").backward(g)
assert q.grad.isfinite().all() and p.grad.isfinite().all()
print(peak_memory_mb() - base)
"""


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="peak memory is read from /proc (Linux)")
def test_chunked_memory_is_flat_in_T():
    # One materialised (B, T, T, H) float32 intermediate at this shape is 1024 MiB.
    out = subprocess.run([sys.executable, "-c", CODE], check=True, capture_output=True, text=True)
    extra_mb = float(out.stdout.strip().splitlines()[-1])
    assert extra_mb < 100, f"chunked forward+backward grew the peak resident memory by {extra_mb:.0f} MiB"
