"""Threads on a shared machine: a training run lowers torch's threads to the free cores once, at its start; an explicit
count, CAUSAL_RN_THREADS=fixed and a quiet machine keep them; the fused kernel keeps the count asked for."""

import os, subprocess, sys, textwrap

import pytest

from causal_rn.benchmark import busy_processes

SHARE = """
import torch
from causal_rn.threads import kernel_threads, share_cores
torch.set_num_threads(2)
print(share_cores(look=1.0), kernel_threads())
"""


def run(code: str, **env) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)], capture_output=True, text=True, env={**os.environ, **env}
    )


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not os.path.exists("/proc/stat"), reason="needs 2 cores and Linux")
def test_beside_busy_processes_a_run_trains_on_the_free_cores():
    with busy_processes(os.cpu_count()):  # every core taken by another process
        busy = run(SHARE, CAUSAL_RN_THREADS="auto")
        fixed = run(SHARE, CAUSAL_RN_THREADS="fixed")
        pinned = run("import torch\nfrom causal_rn.threads import pin_threads, share_cores\npin_threads(2)\n"
                     "print(share_cores(look=1.0))", CAUSAL_RN_THREADS="auto")  # fmt: skip
    assert busy.returncode == 0, busy.stderr
    assert busy.stdout.split() == ["1", "2"]  # torch's ops on one thread; the kernel keeps the two asked for
    assert fixed.stdout.split() == ["2", "2"] and pinned.stdout.split() == ["2"]


@pytest.mark.skipif((os.cpu_count() or 1) < 2 or not os.path.exists("/proc/stat"), reason="needs 2 cores and Linux")
def test_the_main_command_trains_on_the_free_cores_and_a_resume_keeps_its_count(tmp_path):
    out = tmp_path / "run"
    cmd = ["causal-rn-copy", "--string_size", "2", "--batch_size", "4", "--d_model", "8", "--n_blocks", "1", "--quiet"]
    env = {**os.environ, "CAUSAL_RN_THREADS": "auto", "OMP_NUM_THREADS": "2"}
    with busy_processes(os.cpu_count()):
        first = subprocess.run([*cmd, "--iterations", "3", "--out", str(out)], capture_output=True, text=True, env=env)
    assert first.returncode == 0, first.stderr
    assert "training on 1 of 2 torch threads" in first.stdout + first.stderr
    again = subprocess.run(  # a quiet machine now, and more iterations: the run resumes on the count it trained on
        [*cmd, "--iterations", "5", "--extend", "--out", str(out)], capture_output=True, text=True, env=env
    )  # fmt: skip
    assert again.returncode == 0, again.stderr
    assert "resuming on the 1 torch threads this run trained on" in again.stdout + again.stderr


def test_a_bad_threads_setting_is_refused():
    out = run(SHARE, CAUSAL_RN_THREADS="sometimes")  # (refused where it is read, before any work)
    assert out.returncode != 0 and "CAUSAL_RN_THREADS must be one of" in out.stderr


def test_a_training_run_records_its_thread_count(tmp_path):
    from causal_rn.copying import copy_run_config
    from causal_rn.train import fit

    model_cfg, task, cfg = copy_run_config(
        "causal_rn", "cpu", 2, model=dict(d_model=8, n_blocks=1), train=dict(batch_size=4, iterations=3)
    )
    import torch
    from causal_rn.runs import read_checkpoint

    fit(model_cfg, task, cfg, tmp_path / "run", progress=False, log=lambda *a: None)
    state = read_checkpoint(tmp_path / "run" / "checkpoint.pt")["state"]
    assert state["segments"][-1]["threads"] == torch.get_num_threads()
