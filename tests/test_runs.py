"""Run directories a user can trust, tried through the console command as a user would: real tiny runs
(strings of 2 letters, batch 4, a model of width 8 with one block, a few iterations)."""

import csv, json, os, signal, socket, subprocess, sys, time
from pathlib import Path

import pytest

from causal_rn.runs import read_checkpoint

TINY = ["--string_size", "2", "--batch_size", "4", "--d_model", "8", "--n_blocks", "1", "--quiet"]
ROOT = Path(__file__).resolve().parents[1]


def copy(out, *args, timeout=300, env=None):
    "Run causal-rn-copy to completion; the CompletedProcess."
    return subprocess.run(
        ["causal-rn-copy", *TINY, "--out", str(out), *map(str, args)],
        capture_output=True,
        text=True,
        timeout=timeout,
        env=env,
    )


def start(out, *args):
    "Start causal-rn-copy in the background on a long run; the Popen."
    return subprocess.Popen(
        ["causal-rn-copy", *TINY, "--out", str(out), "--iterations", "1000000", *map(str, args)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def wait_for(condition, proc=None, timeout=120):
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, "timed out"
        assert proc is None or proc.poll() is None, proc.communicate()
        time.sleep(0.05)


def rows(out):
    return list(csv.DictReader(open(Path(out) / "metrics.csv")))


def iterations(out):
    return [int(r["iteration"]) for r in rows(out)]


def no_temporaries(out):
    return not [p.name for p in Path(out).iterdir() if ".tmp" in p.name]


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    "An uninterrupted run of 40 iterations: the losses every interrupted one must reproduce."
    out = tmp_path_factory.mktemp("reference") / "run"
    r = copy(out, "--iterations", 40)
    assert r.returncode == 0, r.stderr
    return [(r["iteration"], r["loss"], r["parallel_accuracy"]) for r in rows(out)]


def test_a_folder_in_use_is_refused_with_its_holder_named(tmp_path):
    out = tmp_path / "run"
    first = start(out, "--checkpoint_every", 5)
    try:
        wait_for(lambda: (out / ".lock").exists() and (out / "metrics.csv").exists(), first)
        t0 = time.time()
        second = copy(out, "--iterations", 10)
        assert time.time() - t0 < 60  # refused at once, not after waiting or training
        assert second.returncode == 1
        assert f"is in use by process {first.pid} on {socket.gethostname()}" in second.stderr, second.stderr
    finally:
        first.send_signal(signal.SIGINT)
        _, err = first.communicate(timeout=120)
    assert first.returncode == 130, err  # 128 + SIGINT
    assert not (out / ".lock").exists() and no_temporaries(out)


def test_kill_9_then_resume_takes_over_the_lock_and_is_exact(tmp_path, reference):
    out = tmp_path / "run"
    for _ in range(3):  # three kills at arbitrary moments
        proc = subprocess.Popen(
            ["causal-rn-copy", *TINY, "--out", str(out), "--iterations", "40", "--checkpoint_every", "3"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        before = len(rows(out)) if (out / "metrics.csv").exists() else 0
        wait_for(lambda: (out / "metrics.csv").exists() and len(rows(out)) >= before + 3, proc)
        proc.kill()
        proc.wait()
    assert (out / ".lock").exists()  # left behind by the killed process
    (out / ".checkpoint.pt.tmp999999").write_bytes(b"half-written")  # as a writer killed mid-write leaves it
    done = copy(out, "--iterations", 40, "--checkpoint_every", 3)
    assert done.returncode == 0, done.stderr
    assert "took over" in done.stdout and "which is no longer running" in done.stdout, done.stdout
    assert no_temporaries(out) and not (out / ".lock").exists()
    assert iterations(out) == list(range(1, 41))  # each iteration once, in order
    assert [(r["iteration"], r["loss"], r["parallel_accuracy"]) for r in rows(out)] == reference  # bit for bit


def test_metrics_agree_with_the_checkpoint_after_a_kill(tmp_path):
    out = tmp_path / "run"
    proc = start(out, "--checkpoint_every", 7)
    wait_for(lambda: (out / "metrics.csv").exists() and len(rows(out)) >= 14, proc)
    proc.kill()
    proc.wait()
    ckpt = read_checkpoint(out / "checkpoint.pt")
    assert iterations(out) == list(range(1, ckpt["iteration"] + 1))  # never a row the checkpoint does not hold
    assert [r["loss"] for r in rows(out)] == [f"{m['loss']}" for m in ckpt["metrics"]]


def test_first_signal_checkpoints_second_exits_at_once(tmp_path):
    out = tmp_path / "run"
    proc = start(out, "--checkpoint_every", 2)
    wait_for(lambda: (out / "metrics.csv").exists() and len(rows(out)) >= 4, proc)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err  # 128 + SIGTERM
    assert "SIGTERM: stopped after iteration" in err and "run the same command again to resume" in err
    ckpt = read_checkpoint(out / "checkpoint.pt")
    assert iterations(out) == list(range(1, ckpt["iteration"] + 1)) and no_temporaries(out)

    proc = start(out, "--checkpoint_every", 1)  # a checkpoint every iteration: signals hit writes
    wait_for(lambda: len(rows(out)) >= ckpt["iteration"] + 5, proc)
    proc.send_signal(signal.SIGINT)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 130, err
    assert "SIGINT" in err and no_temporaries(out)
    last = read_checkpoint(out / "checkpoint.pt")  # intact, whatever the second signal interrupted
    assert iterations(out) == list(range(1, last["iteration"] + 1))


def test_a_finished_run_is_reported_not_trained_again(tmp_path):
    out = tmp_path / "run"
    assert copy(out, "--iterations", 6).returncode == 0
    summary, metrics = (out / "summary.json").read_bytes(), (out / "metrics.csv").read_bytes()
    again = copy(out, "--iterations", 6)
    assert again.returncode == 0 and "reporting it (nothing trained)" in again.stdout, again.stdout
    assert "6 iterations" in again.stdout  # the stored result, reported
    assert (out / "summary.json").read_bytes() == summary and (out / "metrics.csv").read_bytes() == metrics
    more = copy(out, "--iterations", 9)  # a new target, not asked to extend: reported
    assert more.returncode == 0 and "--extend" in more.stdout and (out / "summary.json").read_bytes() == summary
    extended = copy(out, "--iterations", 9, "--extend")
    assert extended.returncode == 0, extended.stderr
    s = json.loads((out / "summary.json").read_text())
    assert s["iterations"] == 9 and s["extended"][0]["from_iterations"] == 6 and s["extended"][0]["to_iterations"] == 9
    assert iterations(out) == list(range(1, 10))
    other = copy(out, "--iterations", 9, "--lr", "0.01")  # another run in the same folder: refused
    assert other.returncode == 1 and "train_config.optim.lr: 0.0005 stored, 0.01 asked" in other.stderr, other.stderr


def test_damaged_checkpoints(tmp_path):
    out = tmp_path / "run"
    proc = start(out, "--checkpoint_every", 2)
    wait_for(lambda: (out / "checkpoint.prev.pt").exists() and len(rows(out)) >= 4, proc)
    proc.send_signal(signal.SIGINT)
    proc.communicate(timeout=120)
    previous = read_checkpoint(out / "checkpoint.prev.pt")["iteration"]
    data = bytearray((out / "checkpoint.pt").read_bytes())
    data[len(data) // 2] ^= 0x10  # one flipped bit
    (out / "checkpoint.pt").write_bytes(bytes(data))
    r = copy(out, "--iterations", previous + 2)
    assert r.returncode == 0, r.stderr
    assert "SHA-256 does not match" in r.stdout and "checkpoint.damaged.pt" in r.stdout, r.stdout
    assert (out / "checkpoint.damaged.pt").exists() and iterations(out) == list(range(1, previous + 3))

    for content, message in [
        (b"", "is empty (0 bytes)"),
        (b"\x1f\x8b\x08\x00xyz", "gzip"),
        (read_checkpoint.__doc__.encode(), "text starting"),
    ]:
        bad = tmp_path / f"bad{len(content)}"
        bad.mkdir()
        (bad / "checkpoint.pt").write_bytes(content)
        r = copy(bad, "--iterations", 3)
        assert r.returncode == 1 and str(bad / "checkpoint.pt") in r.stderr and message in r.stderr, r.stderr
        assert "Traceback" not in r.stderr


def test_options_and_the_output_folder_are_checked_before_any_work(tmp_path):
    (tmp_path / "file").write_text("not a folder")
    fifo_run = tmp_path / "fifo"
    fifo_run.mkdir()
    os.mkfifo(fifo_run / "checkpoint.pt")
    cases = [
        (["--out", ""], "name is empty"),
        (["--out", str(tmp_path / "file")], "exists and is not a folder"),
        (["--out", "/proc/causal_rn/run"], "cannot create the run directory"),
        (["--out", str(fifo_run)], "is not a regular file"),
        (["--kind", "bi_rn", "--out", str(tmp_path / "k")], "argument --kind: invalid choice: 'bi_rn'"),
        (["--lr", "nan", "--out", str(tmp_path / "l")], "lr must be a finite number"),
        (["--postnorm", "maybe", "--out", str(tmp_path / "p")], "expected True or False"),
        (["--stop_accuracy", "2", "--out", str(tmp_path / "s")], "stop_accuracy must be <= 1"),
    ]
    for argv, message in cases:
        t0 = time.time()
        r = subprocess.run(
            ["causal-rn-copy", *TINY, "--iterations", "100000", *argv], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 2 and message in r.stderr, (argv, r.stderr)
        assert time.time() - t0 < 30, argv  # refused before training
    if os.geteuid() != 0:  # root writes in a read-only folder anyway
        ro = tmp_path / "ro"
        ro.mkdir()
        ro.chmod(0o555)
        r = subprocess.run(
            ["causal-rn-copy", *TINY, "--out", str(ro / "run")], capture_output=True, text=True, timeout=60
        )
        assert r.returncode == 2 and "cannot create the run directory" in r.stderr


def test_torchrun_checks_before_joining_and_waits_with_a_timeout(tmp_path):
    import socket as s

    with s.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    env = {
        **os.environ,
        "WORLD_SIZE": "2",
        "RANK": "0",
        "LOCAL_RANK": "0",
        "MASTER_ADDR": "127.0.0.1",
        "MASTER_PORT": str(port),
    }
    t0 = time.time()
    r = subprocess.run(
        ["causal-rn-copy", *TINY[:2], "--batch_size", "3", *TINY[4:], "--iterations", "2"],
        capture_output=True,
        text=True,
        timeout=120,
        env=env,
    )
    assert r.returncode == 2 and "must divide evenly over the 2 processes" in r.stderr and time.time() - t0 < 60, (
        r.stderr
    )  # a configuration the job cannot run: refused before joining, exit 2 like every bad option
    r = copy(
        tmp_path / "run", "--iterations", 2, "--dist_timeout", 3, env=env, timeout=180
    )  # the other process never comes
    assert r.returncode == 1 and "gave up after 3 s waiting for the other 1 process(es)" in r.stderr, r.stderr


def test_commands_do_not_overwrite_committed_results(tmp_path):
    from causal_rn.benchmark import default_out

    assert default_out("cpu", quick=True).parts[0] == "runs"  # a smoke test never replaces results/
    stored = tmp_path / "cpu.json"
    stored.write_text("{}")
    r = subprocess.run(["causal-rn-bench", "--quick", "--out", str(stored)], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "pass --overwrite to replace it" in r.stderr and stored.read_text() == "{}"
    ignored = subprocess.run(["git", "check-ignore", "-q", "runs/copy-main"], cwd=ROOT)
    assert ignored.returncode == 0, "the main job's output folder (README) must be ignored by git"


def test_checkpoint_files_prove_their_integrity(tmp_path):
    "Single-bit flips (a sample over the whole file), truncation and foreign files: refused, naming the file."
    import io, random, re, torch
    from causal_rn.runs import CHECKPOINT_FORMAT, CheckpointError, checkpoint_bytes

    payload = dict(format=CHECKPOINT_FORMAT, iteration=1, model={"w": torch.randn(64)}, optimizer={})
    good = checkpoint_bytes(payload)
    path = tmp_path / "checkpoint.pt"
    rng = random.Random(0)
    for bit in rng.sample(range(len(good) * 8), 400):
        flipped = bytearray(good)
        flipped[bit // 8] ^= 1 << (bit % 8)
        path.write_bytes(bytes(flipped))
        with pytest.raises(CheckpointError, match=str(path)):
            read_checkpoint(path)
    buf = io.BytesIO()
    torch.save(payload, buf)
    for content, message in [
        (good[:-1], "SHA-256 does not match"),
        (b"", "is empty"),
        (buf.getvalue(), "a zip archive"),
        (checkpoint_bytes([1, 2]), "it holds a list"),
        (checkpoint_bytes({"a": 1}), "a dict with fields ['a']"),
    ]:
        path.write_bytes(content)
        with pytest.raises(CheckpointError, match=re.escape(message)):
            read_checkpoint(path)
    path.write_bytes(good)
    assert read_checkpoint(path)["iteration"] == 1
