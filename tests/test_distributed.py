"The copy training loop under torchrun with DistributedDataParallel (gloo, 2 CPU processes) against one process."

import csv, shutil, subprocess, sys
from pathlib import Path

import pytest

ARGS = ["--string_size", "4", "--batch_size", "8", "--quiet", "--seed", "3"]
TOLERANCE = 1e-4  # absolute, on per-iteration losses near 3.3 (float32; the reductions run in another order)


def copy_cmd(world: int, iterations: int, out: Path) -> list[str]:
    exe = shutil.which("causal-rn-copy")
    base = (
        [exe]
        if world == 1
        else [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={world}", exe]
    )
    return base + ARGS + ["--iterations", str(iterations), "--out", str(out)]


def losses(out: Path) -> list[float]:
    return [float(r["loss"]) for r in csv.DictReader(open(out / "metrics.csv"))]


def run(cmd):
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return r


@pytest.fixture(scope="module")
def single(tmp_path_factory):
    out = tmp_path_factory.mktemp("single") / "run"
    run(copy_cmd(1, 12, out))
    return losses(out)


def test_two_processes_match_one(single, tmp_path):
    r = run(copy_cmd(2, 12, tmp_path / "ddp"))
    ddp = losses(tmp_path / "ddp")
    assert len(ddp) == len(single) == 12
    assert max(abs(a - b) for a, b in zip(ddp, single)) < TOLERANCE, (ddp, single)
    assert r.stdout.count("autoregressive accuracy") == 1, "only rank 0 reports"
    assert '"world_size": 2' in (tmp_path / "ddp" / "summary.json").read_text()


def test_resume_on_another_world_size(single, tmp_path):
    out = tmp_path / "switch"
    run(copy_cmd(2, 6, out))  # 6 iterations on 2 processes...
    run(copy_cmd(1, 12, out) + ["--extend"])  # ...extended on 1 up to 12
    resumed = losses(out)
    assert len(resumed) == 12
    assert max(abs(a - b) for a, b in zip(resumed, single)) < TOLERANCE


def test_batch_must_divide(tmp_path):
    cmd = copy_cmd(2, 2, tmp_path / "odd")
    cmd[cmd.index("--batch_size") + 1] = "7"
    r = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
    assert r.returncode != 0 and "must divide evenly over the 2 processes" in r.stderr  # torchrun exits 1 for its ranks


def test_language_model_on_two_processes_matches_one(tmp_path):
    "The same engine under the LM task: 2 gloo processes against 1, every logged loss and validation loss."
    args = [
        "--context",
        "16",
        "--batch_size",
        "8",
        "--d_model",
        "16",
        "--n_blocks",
        "1",
        "--iterations",
        "8",
        "--eval_every",
        "4",
        "--eval_batches",
        "1",
        "--quiet",
        "--seed",
        "1",
    ]
    exe = shutil.which("causal-rn-lm")
    run([exe, *args, "--out", str(tmp_path / "one")])
    run(
        [
            sys.executable,
            "-m",
            "torch.distributed.run",
            "--standalone",
            "--nproc_per_node=2",
            exe,
            *args,
            "--out",
            str(tmp_path / "two"),
        ]
    )
    one, two = (list(csv.DictReader(open(tmp_path / d / "metrics.csv"))) for d in ("one", "two"))
    assert len(one) == len(two) == 8
    for a, b in zip(one, two):
        for column in ("loss", "valid_loss"):
            if a[column] or b[column]:
                assert abs(float(a[column]) - float(b[column])) < TOLERANCE, (column, a, b)
    assert '"world_size": 2' in (tmp_path / "two" / "summary.json").read_text()


def _hand_started(tmp_path, per_rank_args, extra_env=None):
    "Two ranks started by hand (no torchrun), as a scheduler would: RANK, WORLD_SIZE, MASTER_ADDR, MASTER_PORT."
    import os, socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    procs = []
    for rank, args in enumerate(per_rank_args):
        env = {
            **os.environ,
            "RANK": str(rank),
            "LOCAL_RANK": str(rank),
            "WORLD_SIZE": "2",
            "MASTER_ADDR": "127.0.0.1",
            "MASTER_PORT": str(port),
            **(extra_env or {}),
        }
        cmd = [shutil.which("causal-rn-copy"), *ARGS, "--iterations", "3", "--out", str(tmp_path / "r"), *args]
        procs.append(subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True))
    return [(p.wait(timeout=300), p.stderr.read()) for p in procs]


@pytest.mark.parametrize("option", [("--lr", "1e-3", "2e-3"), ("--seed", "1", "2"), ("--iterations", "3", "4")])
def test_ranks_started_with_different_options_all_refuse_before_a_step(tmp_path, option):
    name, a, b = option
    results = _hand_started(tmp_path, [[name, a], [name, b]])
    for code, err in results:
        assert code == 2 and "started with different configurations" in err, err[-2000:]
    assert not (tmp_path / "r" / "metrics.csv").exists()  # not one step was taken


@pytest.mark.parametrize(
    "env, message",
    [
        (dict(RANK="1"), "a rank set alone would train without writing anything"),
        (dict(WORLD_SIZE="0"), "WORLD_SIZE=0"),
        (dict(WORLD_SIZE="-1"), "WORLD_SIZE=-1"),
        (dict(WORLD_SIZE="abc"), "WORLD_SIZE='abc' is not an integer"),
        (dict(RANK="5", WORLD_SIZE="2", MASTER_ADDR="127.0.0.1", MASTER_PORT="1"), "RANK=5 with WORLD_SIZE=2"),
        (dict(RANK="0", WORLD_SIZE="2"), "MASTER_ADDR and MASTER_PORT not set"),
    ],
)
def test_a_job_environment_that_cannot_be_is_refused_at_once(tmp_path, env, message):
    import os

    clean = {k: v for k, v in os.environ.items() if k not in ("RANK", "WORLD_SIZE", "MASTER_ADDR", "MASTER_PORT")}
    r = subprocess.run(
        [shutil.which("causal-rn-copy"), *ARGS, "--out", str(tmp_path / "r")],
        env={**clean, **env},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert r.returncode == 2 and message in r.stderr, r.stderr
    assert not (tmp_path / "r").exists()
