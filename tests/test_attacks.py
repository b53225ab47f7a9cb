"""Attacks on run folders, resumes, commands and readers (issue 24): links, deletions outside a folder, resuming onto
other data, damaged or forged files, hand-started ranks are in test_distributed.py, sizes that cannot fit, full disks.
Each case names what it tries; what must hold is that nothing outside the folder is touched, nothing is silently
wrong, and every bad input is a clear error before any work."""

import csv, errno, json, os, shutil, stat, subprocess, sys, threading
from pathlib import Path

import pytest
import torch
from hypothesis import HealthCheck, given, settings, strategies as st

from causal_rn.copying import copy_run_config, run_copy
from causal_rn.lm import run_lm
from causal_rn.runs import (
    CHECKPOINT_FORMAT,
    CheckpointError,
    DiskFull,
    RunDir,
    RunLock,
    checkpoint_bytes,
    read_checkpoint,
)
from causal_rn.train import fit, load_model

BIN = Path(sys.executable).parent
TINY = ["--string_size", "2", "--batch_size", "4", "--quiet", "--d_model", "16", "--n_blocks", "1", "--eval_batch", "4"]
KW = dict(model=dict(d_model=16, n_blocks=1), train_kw=dict(string_size=2, batch_size=4, eval_batch=4, iterations=4))
ROOT = Path(__file__).resolve().parents[1]


def cmd(name, *args, env=None, timeout=120):
    return subprocess.run(
        [str(BIN / name), *args], capture_output=True, text=True, timeout=timeout, env={**os.environ, **(env or {})}
    )


# --- writes and deletions outside the run folder ----------------------------------------------------------------
def test_a_lock_planted_as_a_link_is_refused_and_its_target_untouched(tmp_path):
    r, v = tmp_path / "r", tmp_path / "v.txt"
    r.mkdir()
    v.write_text("precious\n")
    os.symlink("../v.txt", r / ".lock")
    out = cmd("causal-rn-copy", *TINY, "--iterations", "2", "--out", str(r))
    assert out.returncode == 2 and "is not a regular file of its own" in out.stderr, out.stderr
    assert v.read_text() == "precious\n" and os.path.islink(r / ".lock")


@pytest.mark.parametrize("name", ["checkpoint.pt", "metrics.csv", "summary.json", "checkpoint.prev.pt"])
def test_any_run_file_planted_as_a_link_is_refused(tmp_path, name):
    r, v = tmp_path / "r", tmp_path / "v.txt"
    r.mkdir()
    v.write_text("precious")
    os.symlink(v, r / name)
    out = cmd("causal-rn-copy", *TINY, "--iterations", "2", "--out", str(r))
    assert out.returncode == 2 and v.read_text() == "precious", out.stderr


def test_the_write_probe_never_writes_through_a_link(tmp_path):
    r, v = tmp_path / "r", tmp_path / "v.txt"
    r.mkdir()
    v.write_text("precious")
    os.symlink(v, r / f".write-probe.tmp{os.getpid()}")
    with pytest.raises(ValueError, match="is not a file of causal_rn's"):
        RunDir(r).check()
    assert v.read_text() == "precious"


@pytest.mark.parametrize("name", ["../precious", "/tmp/elsewhere", "a/b", "..", ".", ""])
def test_force_never_deletes_outside_its_root(tmp_path, name):
    (tmp_path / "precious").mkdir()
    (tmp_path / "precious" / "keep.txt").write_text("mine")
    (tmp_path / "root").mkdir()
    with pytest.raises(ValueError, match="one folder name"):
        run_copy(name, root=tmp_path / "root", force=True, progress=False, **KW)
    assert (tmp_path / "precious" / "keep.txt").read_text() == "mine"


def test_force_refuses_a_live_run_and_keeps_other_files(tmp_path):
    run_copy("r", root=tmp_path, progress=False, **KW)
    (tmp_path / "r" / "notes.md").write_text("mine")
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time; from causal_rn.runs import RunLock; RunLock(sys.argv[1]).acquire(); "
            "print('locked', flush=True); time.sleep(60)",
            str(tmp_path / "r"),
        ],
        stdout=subprocess.PIPE,
        text=True,
    )
    assert holder.stdout.readline().strip() == "locked"
    try:
        with pytest.raises(RuntimeError, match="is in use by"):
            run_copy("r", root=tmp_path, force=True, progress=False, **KW)
        assert (tmp_path / "r" / "summary.json").exists()  # nothing deleted under the live run
    finally:
        holder.kill()
        holder.wait()
    run_copy("r", root=tmp_path, force=True, progress=False, log=lambda *a: None, **KW)
    assert (tmp_path / "r" / "notes.md").read_text() == "mine"


def test_a_users_dot_file_is_not_a_temporary(tmp_path):
    (tmp_path / "r").mkdir()
    for name in (".my-notes.tmpl", ".notes.tmp", ".summary.json.tmpx"):
        (tmp_path / "r" / name).write_text("mine")
    (tmp_path / "r" / ".metrics.csv.tmp4242").write_text("half")  # what a killed writer leaves
    with RunDir(tmp_path / "r") as run:
        assert run.removed == [".metrics.csv.tmp4242"]
    assert sorted(p.name for p in (tmp_path / "r").iterdir()) == [".my-notes.tmpl", ".notes.tmp", ".summary.json.tmpx"]


# --- resuming onto something else -------------------------------------------------------------------------------
def test_resuming_on_a_rewritten_corpus_is_refused(tmp_path):
    corpus = tmp_path / "c.txt"
    corpus.write_text("the quick brown fox jumps over the lazy dog. " * 200)
    kw = dict(model=dict(d_model=16, n_blocks=1), progress=False, log=lambda *a: None)
    train = dict(corpus=str(corpus), context=16, batch_size=4, eval_batches=1, checkpoint_every=2, eval_every=2)
    run_lm("r", root=tmp_path, train_kw=dict(train, iterations=2), **kw)
    (tmp_path / "r" / "summary.json").unlink()  # as if stopped at its checkpoint
    corpus.write_text("a completely different text, about something else entirely. " * 200)
    with pytest.raises(ValueError, match="data_fingerprint"):
        run_lm("r", root=tmp_path, train_kw=dict(train, iterations=4), **kw)


def test_extend_needs_a_finished_run_with_its_checkpoint(tmp_path):
    empty = cmd("causal-rn-copy", *TINY, "--iterations", "4", "--extend", "--out", str(tmp_path / "empty"))
    assert empty.returncode == 1 and "nothing to extend" in empty.stderr, empty.stderr
    done = cmd("causal-rn-copy", *TINY, "--iterations", "2", "--out", str(tmp_path / "r"))
    assert done.returncode == 0
    (tmp_path / "r" / "summary.json").unlink()  # unfinished now
    unfinished = cmd("causal-rn-copy", *TINY, "--iterations", "4", "--extend", "--out", str(tmp_path / "r"))
    assert unfinished.returncode == 1 and "holds an unfinished run: nothing to extend" in unfinished.stderr
    assert cmd("causal-rn-copy", *TINY, "--iterations", "2", "--out", str(tmp_path / "r")).returncode == 0
    for f in ("checkpoint.pt", "checkpoint.prev.pt"):
        (tmp_path / "r" / f).unlink(missing_ok=True)  # as a committed run
    before = (tmp_path / "r" / "metrics.csv").read_text()
    stored = cmd("causal-rn-copy", *TINY, "--iterations", "4", "--extend", "--out", str(tmp_path / "r"))
    assert stored.returncode == 1 and "without its checkpoint" in stored.stderr
    assert (tmp_path / "r" / "metrics.csv").read_text() == before  # nothing retrained, nothing overwritten


def test_a_resume_with_other_free_settings_is_recorded_part_by_part(tmp_path):
    out = str(tmp_path / "r")
    assert cmd("causal-rn-copy", *TINY, "--iterations", "2", "--out", out).returncode == 0
    (tmp_path / "r" / "summary.json").unlink()
    assert cmd("causal-rn-copy", *TINY, "--iterations", "4", "--amp", "True", "--out", out).returncode == 0
    s = json.loads((tmp_path / "r" / "summary.json").read_text())
    assert [(p["start"], p["amp"]) for p in s["segments"]] == [(0, False), (2, True)]


def _stored_run(tmp_path):
    run_copy("r", root=tmp_path, progress=False, **KW)
    return tmp_path / "r"


def test_an_edited_or_cut_metrics_file_is_named(tmp_path):
    from causal_rn.runs import load_run

    r = _stored_run(tmp_path)
    lines = (r / "metrics.csv").read_text().splitlines()
    (r / "metrics.csv").write_text("\n".join(lines[:2]) + "\n")  # cut to one row
    with pytest.raises(ValueError, match="is not the file the run wrote"):
        load_run(r)


def test_causal_rn_status_on_damaged_results_exits_2(tmp_path):
    shutil.copytree(ROOT / "results", tmp_path / "results")
    m = next((tmp_path / "results" / "copy").glob("scaling-*/metrics.csv"))
    m.write_text(m.read_text().splitlines()[0] + "\n")
    out = cmd("causal-rn-status", "--results", str(tmp_path / "results"))
    assert out.returncode == 2 and "cannot be read" in out.stderr and "Traceback" not in out.stderr, out.stderr
    s = next((tmp_path / "results" / "copy").glob("curve-*/summary.json"))
    s.write_text("[]")
    out = cmd("causal-rn-status", "--results", str(tmp_path / "results"))
    assert out.returncode == 2 and "Traceback" not in out.stderr


def _payload(r):
    return read_checkpoint(r / "checkpoint.pt")


@pytest.mark.parametrize(
    "field, value", [("iteration", 3.5), ("iteration", 10**12), ("iteration", -5), ("model", "nan weights")]
)
def test_a_sealed_but_impossible_checkpoint_falls_back_to_the_previous_one(tmp_path, field, value):
    r = tmp_path / "r"
    model_cfg, task, cfg = copy_run_config(
        "causal_rn",
        "cpu",
        2,
        model=KW["model"],
        train=dict(batch_size=4, eval_batch=4, iterations=4, checkpoint_every=2),
    )
    fit(model_cfg, task, cfg, r, progress=False)
    (r / "summary.json").unlink()
    bad = _payload(r)
    if value == "nan weights":
        bad["model"] = {k: v * float("nan") for k, v in bad["model"].items()}
    else:
        bad[field] = value
    (r / "checkpoint.pt").write_bytes(checkpoint_bytes(bad))  # a valid SHA-256 of impossible contents
    messages = []
    summary = fit(model_cfg, task, cfg, r, progress=False, log=messages.append)
    assert summary["iterations"] == 4 and any("resuming from checkpoint.prev.pt (iteration 2)" in m for m in messages)


def test_one_flipped_bit_in_the_shipped_weights_is_refused(tmp_path):
    from causal_rn.explore import load_weights

    data = bytearray((ROOT / "results/explore/copier-cpu-L16.pt").read_bytes())
    data[len(data) // 3] ^= 4
    (tmp_path / "w.pt").write_bytes(bytes(data))
    with pytest.raises(ValueError, match="SHA-256 does not match"):
        load_weights(tmp_path / "w.pt")


# --- hangs and memory blow-ups: refused before anything is read or allocated -------------------------------------
def test_a_fifo_or_device_as_a_corpus_is_refused_at_once(tmp_path):
    os.mkfifo(tmp_path / "f.txt")
    os.symlink("/dev/zero", tmp_path / "zero.txt")
    for corpus in (tmp_path / "f.txt", tmp_path / "zero.txt"):
        out = cmd("causal-rn-lm", "--corpus", str(corpus), "--quiet", timeout=60)
        assert out.returncode == 2 and "is not a regular file" in out.stderr, out.stderr


@pytest.mark.parametrize(
    "command, args",
    [
        ("causal-rn-mqar", ["--seq_len", "100000", "--vocab_size", "100001"]),
        ("causal-rn-mqar", ["--vocab_size", str(2**31)]),
        ("causal-rn-copy", ["--eval_batch", str(10**7)]),
        ("causal-rn-copy", ["--d_model", str(2**20)]),
    ],
)
def test_sizes_that_cannot_fit_are_refused_before_anything_is_allocated(tmp_path, command, args):
    out = cmd(command, *args, "--quiet", "--out", str(tmp_path / "r"), timeout=60)
    assert out.returncode == 2 and "GiB" in out.stderr and "choose smaller sizes" in out.stderr, out.stderr
    assert not (tmp_path / "r").exists()


def test_read_checkpoint_never_reads_a_device_or_fifo():
    with pytest.raises(CheckpointError, match="is not a regular file"):
        read_checkpoint("/dev/zero")


def test_a_stored_configuration_that_does_not_fit_its_weights_is_refused_before_allocation(tmp_path):
    r = _stored_run(tmp_path)
    p = _payload(r)
    p["model_config"] = {**p["model_config"], "d_model": 10**6}
    (r / "checkpoint.pt").write_bytes(checkpoint_bytes(p))
    with pytest.raises(ValueError, match="do not fit together"):
        load_model(r)


# --- clear errors, and the documented exit status ----------------------------------------------------------------
@pytest.mark.parametrize(
    "content, why",
    [("[]", "holds a JSON list"), ("null", "holds a JSON NoneType"), ("{}", "lacks"), ('{"kind": "x"}', "lacks")],
)
def test_a_summary_that_is_not_one_is_named(tmp_path, content, why):
    r = tmp_path / "r"
    r.mkdir()
    (r / "summary.json").write_text(content)
    out = cmd("causal-rn-copy", *TINY, "--iterations", "2", "--out", str(r))
    assert out.returncode == 1 and why in out.stderr and "Traceback" not in out.stderr, out.stderr


@pytest.mark.parametrize(
    "args, env, message",
    [
        (["--seed", str(2**64)], {}, "seed must be below 2**64"),
        (["--out", "x" * 5000], {}, "File name too long"),
        ([], {"CAUSAL_RN_TILE_THREADS": "garbage"}, "CAUSAL_RN_TILE_THREADS must be one of"),
    ],
)
def test_bad_options_exit_2(tmp_path, args, env, message):
    out = cmd("causal-rn-copy", *TINY, *args, env=env)
    assert out.returncode == 2 and message in out.stderr, out.stderr


def test_a_full_disk_is_named_and_the_old_file_kept(tmp_path, monkeypatch):
    "A real full disk where a tmpfs can be mounted here, else a write that fails with ENOSPC."
    from causal_rn import runs

    mount = tmp_path / "full"
    mount.mkdir()
    mounted = (
        subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mount)], capture_output=True).returncode
        == 0
    )
    try:
        if mounted:
            (mount / "summary.json").write_text("old")
            with pytest.raises(DiskFull, match="no space left on the device"):
                runs.write_text(mount / "summary.json", "x" * 200_000)
            assert (mount / "summary.json").read_text() == "old"
            assert [p.name for p in mount.iterdir()] == ["summary.json"]  # no temporary left behind
        real = os.fsync

        def full(fd):
            raise OSError(errno.ENOSPC, "No space left on device")

        monkeypatch.setattr(runs.os, "fsync", full)
        with pytest.raises(DiskFull, match="free some space"):
            runs.write_json(tmp_path / "s.json", {})
        monkeypatch.setattr(runs.os, "fsync", real)
    finally:
        if mounted:
            subprocess.run(["umount", str(mount)])


def test_the_status_readme_is_never_replaced_through_a_link_or_when_read_only(tmp_path):
    readme = tmp_path / "README.md"
    readme.write_text((ROOT / "README.md").read_text().replace("**yes**", "**no**", 1))
    os.symlink(readme, tmp_path / "link.md")
    out = cmd("causal-rn-status", "--results", str(ROOT / "results"), "--readme", str(tmp_path / "link.md"))
    assert out.returncode == 2 and "is a symbolic link" in out.stderr
    readme.chmod(0o444)
    out = cmd("causal-rn-status", "--results", str(ROOT / "results"), "--readme", str(readme))
    assert out.returncode == 2 and "is read-only" in out.stderr
    readme.chmod(0o640)
    assert cmd("causal-rn-status", "--results", str(ROOT / "results"), "--readme", str(readme)).returncode == 0
    assert stat.S_IMODE(readme.stat().st_mode) == 0o640
    assert cmd("causal-rn-status", "--check").returncode == 2


def test_mqar_cannot_stop_without_evaluations():
    out = cmd("causal-rn-mqar", "--eval_every", "0", "--stop_accuracy", "0.5", "--quiet")
    assert out.returncode == 2 and "needs held-out evaluations" in out.stderr, out.stderr


def test_the_relation_of_tiny_inputs_is_finite_as_the_naive_form_is():
    from causal_rn.relation import relation

    x = torch.randn(1, 6, 4, generator=torch.Generator().manual_seed(0))
    for scale in (1e-39, 1e-44):
        y, ref = relation(x * scale, x * scale), relation((x * scale).double(), (x * scale).double(), impl="naive")
        assert y.isfinite().all() and torch.allclose(y.double(), ref, atol=1e-5)


def test_sharing_tiles_leaves_new_threads_their_thread_count():
    script = (
        "import threading, torch\nimport causal_rn.tiles as t\nfrom causal_rn.relation import relation\n"
        "t.TILE_THREADS = 'tiles'\nq = torch.randn(2, 512, 1024)\nrelation(q, q, impl='chunked')\nseen = []\n"
        "t = threading.Thread(target=lambda: seen.append(torch.get_num_threads())); t.start(); t.join()\n"
        "print(torch.get_num_threads(), seen[0])"
    )
    out = subprocess.run(
        [sys.executable, "-c", script],
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, "OMP_NUM_THREADS": "2"},
    )
    main, new = out.stdout.split()
    assert main == new == "2", out.stdout + out.stderr


# --- properties: whatever the input, a clear error of the documented kind, never something else ------------------
FAST = settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture]
)


@FAST
@given(st.binary(max_size=400))
def test_any_bytes_as_a_checkpoint_are_a_checkpoint_error(tmp_path_factory, data):
    p = tmp_path_factory.mktemp("c") / "checkpoint.pt"
    p.write_bytes(data)
    with pytest.raises(CheckpointError):
        read_checkpoint(p)


@FAST
@given(st.one_of(st.integers(), st.floats(allow_nan=True), st.text(max_size=5), st.none(), st.booleans()))
def test_any_sealed_iteration_but_a_count_is_refused(tmp_path_factory, it):
    p = tmp_path_factory.mktemp("c") / "checkpoint.pt"
    p.write_bytes(checkpoint_bytes(dict(format=CHECKPOINT_FORMAT, iteration=it, model={}, optimizer={})))
    ok = isinstance(it, int) and not isinstance(it, bool) and 0 <= it <= 10**9
    if ok:
        assert read_checkpoint(p)["iteration"] == it
    else:
        with pytest.raises(CheckpointError):
            read_checkpoint(p)


json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=4),
    lambda c: st.lists(c, max_size=3) | st.dictionaries(st.text(max_size=12), c, max_size=5),
    max_leaves=8,
)


@FAST
@given(json_values)
def test_any_json_as_a_summary_is_read_or_named(tmp_path_factory, value):
    r = tmp_path_factory.mktemp("r")
    (r / "summary.json").write_text(json.dumps(value))
    try:
        s = RunDir(r).read_summary()
        assert isinstance(s, dict) and isinstance(s["iterations"], int)
    except ValueError as e:
        assert str(r / "summary.json") in str(e)


@FAST
@given(*[st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=6)] * 2)
def test_any_job_environment_is_a_job_or_a_named_error(rank, size):
    "Any RANK and WORLD_SIZE an environment can hold (no NUL, no lone surrogate): a job, or an error naming them."
    from causal_rn.processes import world

    saved = {k: os.environ.get(k) for k in ("RANK", "WORLD_SIZE")}
    try:
        os.environ.update(RANK=rank, WORLD_SIZE=size)  # inside the try: whatever happens, the environment is put back
        r, n = world()
        assert 0 <= r < n
    except ValueError as e:
        assert "RANK" in str(e) or "WORLD_SIZE" in str(e) or "MASTER" in str(e)
    finally:
        for k, v in saved.items():
            os.environ.pop(k, None) if v is None else os.environ.__setitem__(k, v)


@FAST
@given(st.text(max_size=12))
def test_any_run_name_stays_inside_its_root(tmp_path_factory, name):
    from causal_rn.train import fit_named

    root = tmp_path_factory.mktemp("root")
    try:
        fit_named(root, name, None, None, None, force=True)
    except ValueError as e:
        assert "one folder name" in str(e) or "control characters" in str(e) or "name is empty" in str(e)
    except (AttributeError, TypeError):  # the name passed: it got as far as the (absent) configuration
        assert (root / name).resolve().parent == root.resolve()


@FAST
@given(st.text(max_size=40))
def test_any_stored_string_stays_in_its_table_row(text):
    from causal_rn.config import Finding
    from causal_rn.reproduction import status_markdown

    row = status_markdown([Finding("Fig. 1", text, text, text, text, "1", "yes", text, "13_x.ipynb")]).splitlines()
    assert len(row) == 3 and "<" not in row[2].replace("&lt;", "")
