"""The fused CPU kernel's fallback: where no C compiler builds it, one warning, and the exact relation runs on the
chunked path with the same results; asked for by name, a clear error."""

import os, subprocess, sys, textwrap


def run_without_compiler(tmp_path, code: str) -> subprocess.CompletedProcess:
    env = dict(os.environ, CC=str(tmp_path / "no-such-compiler"), CAUSAL_RN_CACHE=str(tmp_path / "cache"))
    env.pop("CAUSAL_RN_FUSED", None)
    return subprocess.run(
        [sys.executable, "-W", "always", "-c", textwrap.dedent(code)], capture_output=True, text=True, env=env
    )


def test_without_a_compiler_auto_warns_once_and_runs_the_chunked_path(tmp_path):
    out = run_without_compiler(
        tmp_path,
        """
        import torch
        from causal_rn.relation import RelationSpec, relation, resolve_impl
        q, p = torch.randn(2, 30, 16), torch.randn(2, 30, 16, requires_grad=True)
        y = relation(q, p)
        y.sum().backward()
        y2 = relation(q, p)  # a second call: no second warning
        torch.testing.assert_close(y, relation(q, p, impl="chunked"), rtol=0, atol=0)
        assert resolve_impl("auto", RelationSpec(), 16) == "chunked"
        try:
            relation(q, p, impl="fused")
        except RuntimeError as e:
            print("refused:", e)
        """,
    )
    assert out.returncode == 0, out.stderr
    assert out.stderr.count("the fused CPU relation kernel could not be built") == 1, out.stderr
    assert "install a C compiler" in out.stderr.lower() or "Install a C compiler" in out.stderr
    assert "refused: impl='fused' needs its C kernel" in out.stdout


def test_a_compiler_that_fails_is_the_same_fallback(tmp_path):
    (tmp_path / "cc").write_text("#!/bin/sh\necho 'cc: out of disk' >&2\nexit 1\n")
    (tmp_path / "cc").chmod(0o755)
    env = dict(os.environ, CC=str(tmp_path / "cc"), CAUSAL_RN_CACHE=str(tmp_path / "cache"))
    code = "import torch\nfrom causal_rn.relation import relation\nprint(relation(*torch.randn(2, 1, 4, 8)).shape)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert out.returncode == 0 and "torch.Size([1, 4, 8])" in out.stdout, out.stderr
    assert "exited 1: cc: out of disk" in out.stderr


def test_the_kernel_is_built_once_and_cached(tmp_path):
    env = dict(os.environ, CAUSAL_RN_CACHE=str(tmp_path))
    code = "from causal_rn.fused import fused_kernel, _build\nassert fused_kernel() is not None\nprint(_build())"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and list((tmp_path / "causal_rn").iterdir()) == [
        __import__("pathlib").Path(first.stdout.strip())
    ]
