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
    "One library per width (8 lanes, and 16 where torch runs AVX-512), built by the first process, reused by the next."
    import torch

    env = dict(os.environ, CAUSAL_RN_CACHE=str(tmp_path))
    code = "from causal_rn.fused import fused_kernel, _build\nassert fused_kernel() is not None\nprint(_build())"
    first = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    built = {f: f.stat().st_mtime_ns for f in (tmp_path / "causal_rn").iterdir()}
    second = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)
    assert first.returncode == 0 and second.returncode == 0, first.stderr + second.stderr
    assert first.stdout == second.stdout and __import__("pathlib").Path(first.stdout.strip()) in built
    assert len(built) == (2 if torch.backends.cpu.get_cpu_capability() == "AVX512" else 1), built
    assert {f: f.stat().st_mtime_ns for f in (tmp_path / "causal_rn").iterdir()} == built  # nothing built again


def _build_in_fresh_process(cache, extra_env=None) -> subprocess.CompletedProcess:
    env = dict(os.environ, CAUSAL_RN_CACHE=str(cache), **(extra_env or {}))
    code = "from causal_rn.fused import fused_kernel, _build\nassert fused_kernel() is not None\nprint(_build())"
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=env)


def test_two_processes_building_at_once_both_get_a_whole_library(tmp_path):
    env = dict(os.environ, CAUSAL_RN_CACHE=str(tmp_path))
    code = "from causal_rn.fused import fused_kernel, _build\nassert fused_kernel() is not None\nprint(_build())"
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True, env=env) for _ in "ab"]
    outs = [p.communicate()[0] for p in procs]
    assert all(p.returncode == 0 for p in procs) and outs[0] == outs[1]
    left = sorted(f.name for f in (tmp_path / "causal_rn").iterdir())
    assert left and all(n.startswith("fused-") and n.endswith(".so") for n in left), left  # no build folders left


def test_a_link_in_the_cache_is_replaced_not_followed(tmp_path):
    first = _build_in_fresh_process(tmp_path)
    assert first.returncode == 0, first.stderr
    lib = __import__("pathlib").Path(first.stdout.strip())
    outside = tmp_path / "outside.so"
    outside.write_text("not a library")
    lib.unlink()
    lib.symlink_to(outside)
    again = _build_in_fresh_process(tmp_path)
    assert again.returncode == 0, again.stderr
    assert outside.read_text() == "not a library"  # the link's target is untouched
    assert lib.is_file() and not lib.is_symlink()  # and a library built in its place


def test_build_folders_left_by_a_killed_build_are_cleared_when_old(tmp_path):
    folder = tmp_path / "causal_rn"
    folder.mkdir()
    old, recent = folder / "build-old", folder / "build-recent"  # as TemporaryDirectory names them
    for d in (old, recent):
        d.mkdir()
        (d / "fused.c").write_text("/* half written */")
    os.utime(old, (0, 0))
    out = _build_in_fresh_process(tmp_path)
    assert out.returncode == 0, out.stderr
    assert not old.exists() and recent.exists()  # an old one is debris; a recent one may be another build's


def test_a_cache_that_cannot_be_made_falls_back_to_a_private_folder(tmp_path):
    (tmp_path / "file").write_text("")  # the cache would have to be a folder inside a file
    out = _build_in_fresh_process(tmp_path / "file")
    assert out.returncode == 0 and "could not be built" not in out.stderr, out.stderr
    assert "/causal_rn-" in out.stdout  # a private temporary folder


def test_zero_and_constant_rows_match_the_chunked_path():
    "Rows all zero, constant rows (zero after centring) and eps > 0: the kernel's pair scales as pair_spread's."
    import torch
    from causal_rn.relation import relation

    g = torch.Generator().manual_seed(3)
    q, p = torch.randn(2, 20, 24, generator=g), torch.randn(2, 20, 24, generator=g)
    q[0, 3], p[0, 3], q[1, :5], p[1, 7] = 0.0, 0.0, 2.5, -1.0
    for eps in (0.0, 1e-3):
        for stable in (False, True):
            qq, pp = q.clone().requires_grad_(), p.clone().requires_grad_()
            y = relation(qq, pp, impl="fused", eps=eps, stable=stable)
            (y * q).sum().backward()
            qc, pc = q.clone().requires_grad_(), p.clone().requires_grad_()
            yc = relation(qc, pc, impl="chunked", eps=eps, stable=stable)
            (yc * q).sum().backward()
            for a, b in ((y, yc), (qq.grad, qc.grad), (pp.grad, pc.grad)):
                assert a.isfinite().all()
                torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-5)


def test_short_sequences_and_every_remainder_of_lanes():
    "One token, fewer tokens than row groups, H not a multiple of 8, H at the kernel's limit: as the chunked path."
    import torch
    from causal_rn.relation import relation

    g = torch.Generator().manual_seed(4)
    for B, T, H in [(3, 1, 8), (2, 5, 9), (1, 3, 1600)]:
        for causal in (True, False):
            q, p = torch.randn(B, T, H, generator=g), torch.randn(B, T, H, generator=g)
            y = relation(q, p, impl="fused", causal=causal, stable=True)
            torch.testing.assert_close(y, relation(q, p, impl="chunked", causal=causal, stable=True))
