"The console command causal-rn-bench, as a user runs it."

import json, subprocess


def test_bench_help():
    out = subprocess.run(["causal-rn-bench", "--help"], check=True, capture_output=True, text=True).stdout
    for option in ("--out", "--quick", "--repeats", "--mem_limit_gb", "--device", "--providers", "--no_training"):
        assert option in out


def test_bench_quick_writes_results(tmp_path):
    path = tmp_path / "bench.json"
    # every provider but the compiled one (compiling in each fresh process takes about 10 s)
    out = subprocess.run(
        [
            "causal-rn-bench",
            "--quick",
            "--repeats",
            "1",
            "--out",
            str(path),
            "--providers",
            "materialised,chunked,triton,linear,sdpa",
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout
    assert "than materialised" in out and str(path) in out  # "faster than" or "slower than"
    res = json.loads(path.read_text())
    assert res["quick"] is True and res["device"].startswith("cpu") and res["torch"]
    seen = {(r["case"], r["passes"], r["provider"]): r for r in res["rows"]}
    for case in ("copy", "target", "lm", "sweep"):
        for provider in ("materialised", "chunked", "linear", "sdpa"):
            assert seen[(case, "forward+backward", provider)]["status"] == "ok"
    assert seen[("copy", "forward+backward", "triton")]["status"].startswith("not run")
    diffs = seen[("copy", "forward+backward", "chunked")]["max_rel_diff_vs_materialised"]
    assert set(diffs) == {"output", "grad q", "grad p"} and max(diffs.values()) < 1e-5
    assert res["exp_ceilings"]["in_cache_exps_per_s"] > 0
    assert {t["kind"] for t in res["training"]} == {
        "causal_rn",
        "linear_causal_rn",
        "transformer",
        "linear_transformer",
    }


def test_bench_bad_options_exit_with_a_message(tmp_path):
    out = subprocess.run(
        ["causal-rn-bench", "--quick", "--providers", "chunked,fast", "--out", str(tmp_path / "x.json")],
        capture_output=True,
        text=True,
    )
    assert out.returncode != 0 and "unknown providers ['fast']" in out.stderr


def test_copy_help_lists_every_option():
    out = subprocess.run(["causal-rn-copy", "--help"], check=True, capture_output=True, text=True).stdout
    for option in (
        "--kind",
        "--preset",
        "--string_size",
        "--prenorm",
        "--postnorm",
        "--act",
        "--norm",
        "--iterations",
        "--batch_size",
        "--lr",
        "--schedule",
        "--stop_accuracy",
        "--seed",
        "--out",
        "--device",
        "--quiet",
        "--extend",
    ):
        assert option in out, option


def test_copy_trains_resumes_and_reports(tmp_path):
    base = ["causal-rn-copy", "--string_size", "4", "--quiet", "--out", str(tmp_path)]
    out = subprocess.run(base + ["--iterations", "30"], check=True, capture_output=True, text=True).stdout
    assert "autoregressive accuracy" in out and "30 iterations" in out
    summary = json.loads((tmp_path / "summary.json").read_text())
    assert summary["kind"] == "causal_rn" and summary["preset"] == "cpu" and summary["iterations"] == 30
    assert len((tmp_path / "metrics.csv").read_text().splitlines()) == 31
    out = subprocess.run(base + ["--iterations", "60", "--extend"], check=True, capture_output=True, text=True).stdout
    assert "resuming" in out and json.loads((tmp_path / "summary.json").read_text())["iterations"] == 60


def test_copy_bad_options_exit_with_a_message(tmp_path):
    out = subprocess.run(
        ["causal-rn-copy", "--kind", "transformer", "--act", "relu", "--quiet"], capture_output=True, text=True
    )
    assert out.returncode != 0 and "leave them at their defaults" in out.stderr
    out = subprocess.run(["causal-rn-copy", "--preset", "gpu", "--quiet"], capture_output=True, text=True)
    assert out.returncode != 0 and "invalid choice: 'gpu'" in out.stderr


def test_copy_sigterm_writes_a_checkpoint_and_resumes(tmp_path):
    import signal, time

    out = tmp_path / "run"
    cmd = ["causal-rn-copy", "--string_size", "4", "--iterations", "100000", "--out", str(out), "--quiet"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    deadline = time.time() + 120
    while not (out / "checkpoint.pt").exists() and time.time() < deadline and proc.poll() is None:
        time.sleep(0.2)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err  # 128 + SIGTERM
    assert "SIGTERM: stopped after iteration" in err and "run the same command again to resume" in err
    from causal_rn.runs import read_checkpoint

    ckpt = read_checkpoint(out / "checkpoint.pt")
    rows = (out / "metrics.csv").read_text().splitlines()
    assert ckpt["iteration"] == len(rows) - 1 >= 100
    assert not [p for p in out.iterdir() if ".tmp" in p.name], "a temporary file was left behind"
    done = subprocess.run(cmd[:4] + [str(ckpt["iteration"] + 3)] + cmd[5:], capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr
    assert len((out / "metrics.csv").read_text().splitlines()) - 1 == ckpt["iteration"] + 3


def test_bench_kernel_and_contention_studies_write_results(tmp_path):
    "The two studies of the fused kernel, at their smoke-test size: every row measured or saying why not."
    kernel, contention = tmp_path / "kernel.json", tmp_path / "contention.json"
    for args, path in ((["--kernel"], kernel), (["--contention", "1"], contention)):
        out = subprocess.run(
            ["causal-rn-bench", "--quick", "--repeats", "1", "--out", str(path), *args], capture_output=True, text=True
        )
        assert out.returncode == 0 and str(path) in out.stdout, out.stdout + out.stderr
    res = json.loads(kernel.read_text())
    assert res["quick"] is True and {r["provider"] for r in res["rows"]} == {"fused", "chunked", "materialised", "sdpa"}
    assert all(r["status"] == "ok" or r["status"].startswith("not run") for r in res["rows"])
    assert all(c["torch_exps_per_s"] > 0 for c in res["exp_ceilings"])
    fused = [r for r in res["rows"] if r["provider"] == "fused" and r["status"] == "ok"]
    assert all(0 < r["of_torch_exp"] for r in fused)
    assert {t["kind"] for t in res["training"]} >= {"causal_rn", "transformer"} and res["profiles"]
    rows = json.loads(contention.read_text())["rows"]
    assert {(r["kind"], r["threads"], r["busy"]) for r in rows} >= {
        ("causal_rn", "shared", 1),
        ("transformer", "fixed", 1),
    }
    assert all(r["slowdown"] > 0 and r["fair_share"] >= 1 for r in rows)


def test_bench_studies_refuse_nonsense(tmp_path):
    for args, message in (
        (["--kernel", "--contention", "2"], "separate studies: give one of them"),
        (["--contention", "-1"], "--contention takes a count of busy processes"),
    ):
        out = subprocess.run(
            ["causal-rn-bench", "--quick", "--out", str(tmp_path / "x.json"), *args], capture_output=True, text=True
        )
        assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "x.json").exists()
