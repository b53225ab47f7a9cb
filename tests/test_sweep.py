"""causal-rn-sweep: the same runs through the local pool and through Ray, a worker killed mid-run, two sweeps on one
root, and options refused before any work."""

import csv, json, os, signal, subprocess, sys, time
from pathlib import Path

import pytest

from causal_rn.config import run_path
from causal_rn.sweep import EXPERIMENTS

ROOT = Path(__file__).resolve().parents[1] / "results"
BIN = Path(sys.executable).parent  # the console scripts next to the interpreter that runs the tests
SMOKE = EXPERIMENTS["smoke"].runs()


def sweep(*args, timeout=600):
    return subprocess.run([str(BIN / "causal-rn-sweep"), *args], capture_output=True, text=True, timeout=timeout)


def rows(root, run) -> list[dict]:
    "metrics.csv of a run, every column but the wall-clock seconds."
    with open(run_path(root, run) / "metrics.csv", newline="") as f:
        return [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(f)]


def test_the_local_pool_and_a_local_ray_give_the_same_metrics(tmp_path):
    local = sweep("smoke", "--root", str(tmp_path / "local"), "--jobs", "2", "--threads", "1", "--quiet")
    assert local.returncode == 0, local.stderr
    if os.environ.get("CAUSAL_RN_REQUIRE_RAY") != "1":
        pytest.importorskip("ray", reason="Ray is the optional extra .[cluster]; CI installs it")
    ray = sweep(
        "smoke", "--root", str(tmp_path / "ray"), "--jobs", "2", "--threads", "1", "--backend", "ray", "--quiet"
    )
    assert ray.returncode == 0, ray.stderr
    for r in SMOKE:
        assert rows(tmp_path / "local", r) == rows(tmp_path / "ray", r), r
        assert [int(x["iteration"]) for x in rows(tmp_path / "ray", r)] == list(range(1, 31))
    assert ray.stdout.count(": trained") == 4


SLOW = """
import sys
from causal_rn.config import Experiment, Run
from causal_rn.sweep import EXPERIMENTS, main
train = dict(string_size=2, batch_size=4, eval_batch=4, iterations=2000, checkpoint_every=20)
runs = [Run("copy", k, "cpu", dict(d_model=16, n_blocks=1), train, 0, "slow") for k in ("causal_rn", "transformer")]
EXPERIMENTS["slow"] = Experiment("slow", "two runs of 2000 iterations", "-", (lambda preset, seeds, root: runs,))
sys.exit(main(["slow", *sys.argv[1:]]))
"""


def test_a_worker_killed_mid_run_fails_alone_and_the_next_sweep_resumes_it(tmp_path):
    script = tmp_path / "slow.py"
    script.write_text(SLOW)
    root = tmp_path / "root"
    args = [sys.executable, str(script), "--root", str(root), "--jobs", "1", "--threads", "1", "--quiet"]
    first = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    run = root / "copy" / "slow-cpu-causal_rn-seed0"
    deadline = time.time() + 120
    while time.time() < deadline:  # wait for a checkpoint past iteration 40, then kill the worker that holds the lock
        try:
            if len((run / "metrics.csv").read_text().splitlines()) > 41:
                break
        except OSError:
            pass
        time.sleep(0.2)
    holder = json.loads((run / ".lock").read_text())
    os.kill(holder["pid"], signal.SIGKILL)
    out, err = first.communicate(timeout=300)
    assert first.returncode == 101, (out, err)  # one failed run
    assert "slow-cpu-causal_rn-seed0: failed: the worker process died (killed by signal 9)" in out, out
    assert "slow-cpu-transformer-seed0: trained" in out, out  # the sweep went on
    again = subprocess.run(args, capture_output=True, text=True, timeout=300)
    assert again.returncode == 0, again.stderr
    assert (
        "slow-cpu-causal_rn-seed0: resumed" in again.stdout and "slow-cpu-transformer-seed0: reported" in again.stdout
    )
    iterations = [int(r["iteration"]) for r in csv.DictReader(open(run / "metrics.csv"))]
    assert iterations == list(range(1, 2001)), "every iteration logged exactly once"
    clean = subprocess.run([*args[:3], str(tmp_path / "clean"), *args[4:]], capture_output=True, text=True, timeout=300)
    assert clean.returncode == 0, clean.stderr
    same = [r for r in csv.DictReader(open(tmp_path / "clean" / "copy" / run.name / "metrics.csv"))]
    assert [{k: v for k, v in r.items() if k != "seconds"} for r in csv.DictReader(open(run / "metrics.csv"))] == [
        {k: v for k, v in r.items() if k != "seconds"} for r in same
    ], "the resumed run is the uninterrupted one"


def test_two_sweeps_at_once_on_one_root_train_each_run_once(tmp_path):
    args = [str(BIN / "causal-rn-sweep"), "smoke", "--root", str(tmp_path), "--jobs", "2", "--threads", "1", "--quiet"]
    a = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    b = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    (oa, ea), (ob, eb) = a.communicate(timeout=300), b.communicate(timeout=300)
    assert a.returncode == 0 and b.returncode == 0, (ea, eb)
    for r in SMOKE:
        name = run_path(tmp_path, r).name
        trained = [o for o in (oa, ob) if f"{name}: trained" in o or f"{name}: resumed" in o]
        assert len(trained) == 1, (name, oa, ob)  # trained by one sweep, reported by the other
        assert [int(x["iteration"]) for x in rows(tmp_path, r)] == list(range(1, 31))


@pytest.mark.parametrize(
    "args, message",
    [
        (["fig5"], "no experiment 'fig5'"),
        (["smoke", "--seeds", "0,one"], "seeds are integers"),
        (["smoke", "--backend", "slurm"], "--backend must be local or ray"),
        (["smoke", "--address", "10.0.0.1:6379"], "use it with --backend ray"),
        (["mqar", "--preset", "paper"], "mqar has the presets cpu, zoology"),
        (["lm", "--preset", "paper"], "needs data="),
        (["smoke", "--set", "iterations=5"], "--set changes what"),
    ],
)
def test_bad_options_exit_2_before_any_work(tmp_path, args, message):
    out = sweep(*args, "--root", str(tmp_path / "root"))
    assert out.returncode == 2 and message in out.stderr, out.stderr
    assert not (tmp_path / "root").exists()


def test_dry_run_and_list_read_the_stored_runs():
    out = sweep("fig4", "--dry-run", "--jobs", "2")
    assert out.returncode == 0, out.stderr
    assert "42 runs; 42 finished, 0 partial, 0 missing" in out.stdout and "nothing left to run" in out.stdout
    out = sweep("list")
    assert out.returncode == 0 and "fig4" in out.stdout and " 42 runs,  42 stored" in out.stdout


# The stored runs were made on an AVX2 machine: an AVX-512 one rounds differently unless torch, MKL and oneDNN are held
# to AVX2 (on an AVX2 machine these change nothing).
AVX2 = dict(ATEN_CPU_CAPABILITY="avx2", MKL_ENABLE_INSTRUCTIONS="AVX2", ONEDNN_MAX_CPU_ISA="AVX2")


def same_cpu(stored: dict) -> bool:
    "Whether this machine's CPU is the model the stored run ran on (where its bits can be asked for)."
    from causal_rn.runs import machine

    return stored["device"].split(",")[0] == machine("cpu")["device"].split(",")[0]


def assert_reproduced(root, run, stored: dict):
    """metrics.csv as stored, but the seconds: bit for bit on the CPU model the run was made on; on another vendor's
    CPU (MKL picks other kernels there even when held to AVX2) the same rows, with losses within the last printed
    digit."""
    new, old = rows(root, run), rows(ROOT, run)
    if same_cpu(stored):
        assert new == old
    else:
        assert [r["iteration"] for r in new] == [r["iteration"] for r in old]
        assert max(abs(float(a["loss"]) - float(b["loss"])) for a, b in zip(new, old)) <= 1e-5


def test_a_stored_run_trains_again_to_the_same_bits(tmp_path, monkeypatch):
    "Fig. 4's Transformer at 8 letters, seed 0, re-run in an empty root: metrics.csv as stored, but the seconds."
    for k, v in AVX2.items():
        monkeypatch.setenv(k, v)
    run = next(r for r in EXPERIMENTS["fig4"].runs() if r.kind == "transformer" and r.train["string_size"] == 8)
    stored = json.loads((run_path(ROOT, run) / "summary.json").read_text())
    threads = stored["device"].split(", ")[-1].split()[0]  # the thread count it ran with
    out = sweep("fig4", "--only", "transformer", "--match", "*-L8-seed0", "--threads", threads, "--root", str(tmp_path))
    assert out.returncode == 0 and "1 trained" in out.stdout, out.stdout + out.stderr
    assert_reproduced(tmp_path, run, stored)


def test_stored_causal_rn_runs_train_again_to_the_same_bits_with_the_impl_of_their_day(tmp_path, monkeypatch):
    """Two of Fig. 4's CausalRN runs (8 letters, seeds 0 and 1), stored before the fused kernel: their `impl="auto"` was
    the chunked path then, and with it they re-run to the same metrics.csv. (auto now picks the fused kernel, which
    rounds otherwise.)"""
    for k, v in AVX2.items():
        monkeypatch.setenv(k, v)
    runs = [r for r in EXPERIMENTS["fig4"].runs() if r.kind == "causal_rn" and r.train["string_size"] == 8][:2]
    stored = [json.loads((run_path(ROOT, r) / "summary.json").read_text()) for r in runs]
    assert all("relation_impl" not in s for s in stored), "these runs predate the recorded implementation"
    for r, s in zip(runs, stored):  # each with the thread count it ran with
        threads = s["device"].split(", ")[-1].split()[0]
        out = sweep(
            "fig4", "--only", "causal_rn", "--match", f"*-L8-seed{r.seed}", "--threads", threads,
            "--set", "impl=chunked", "--root", str(tmp_path), "--quiet",
        )  # fmt: skip
        assert out.returncode == 0 and "1 trained" in out.stdout, out.stdout + out.stderr
    for r, s in zip(runs, stored):
        assert_reproduced(tmp_path, r, s)
        assert json.loads((run_path(tmp_path, r) / "summary.json").read_text())["relation_impl"] == "chunked"
