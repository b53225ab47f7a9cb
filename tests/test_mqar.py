"""Multi-query associative recall (causal_rn.mqar): the generator's format, the metrics, the command, and the stored
runs."""

import json, math, re, subprocess
from pathlib import Path

import pytest
import torch

from causal_rn.mqar import (
    IGNORE,
    MQAR_KINDS,
    MQAR_LRS,
    chosen_lr,
    mqar_accuracy,
    mqar_batch,
    mqar_run,
    own_value_fraction,
    sweep_points,
)
from causal_rn.config import run_name, run_path
from causal_rn.runs import read_metrics

ROOT = Path(__file__).resolve().parents[1] / "results"  # the results root
RESULTS = ROOT / "mqar"


@pytest.mark.parametrize("T,k,V", [(8, 2, 9), (16, 4, 17), (32, 8, 64), (64, 3, 101), (128, 16, 8192)])
def test_every_query_has_one_earlier_key_and_its_value(T, k, V):
    x, y = mqar_batch(300, T, k, V, torch.Generator().manual_seed(T + k))
    keys, values = x[:, 0 : 2 * k : 2], x[:, 1 : 2 * k : 2]
    assert ((keys >= 1) & (keys < V // 2)).all() and ((values >= V // 2) & (values < V)).all()
    assert all(len(set(r.tolist())) == k for r in keys) and all(len(set(r.tolist())) == k for r in values)
    scored = y != IGNORE
    assert (scored.sum(-1) == k).all() and not scored[:, : 2 * k].any()
    assert (scored.nonzero()[:, 1] % 2 == 0).all()  # queries at even positions
    for b in range(0, 300, 7):
        for t in scored[b].nonzero().squeeze(1).tolist():
            earlier = (x[b, :t] == x[b, t]).nonzero().squeeze(1).tolist()
            assert len(earlier) == 1 and earlier[0] < 2 * k and y[b, t] == x[b, earlier[0] + 1]
    is_key = (x[:, :, None] == keys[:, None, :]).any(-1)
    assert torch.equal(scored, is_key & (torch.arange(T) >= 2 * k))  # fillers never repeat a key


def test_a_seed_fixes_the_batch_and_the_device_argument_moves_it():
    a = mqar_batch(16, 32, 4, 64, torch.Generator().manual_seed(5))
    b = mqar_batch(16, 32, 4, 64, torch.Generator().manual_seed(5), device="cpu")
    c = mqar_batch(16, 32, 4, 64, torch.Generator().manual_seed(6))
    assert torch.equal(a[0], b[0]) and torch.equal(a[1], b[1]) and not torch.equal(a[0], c[0])


def test_fillers_are_uniform_over_the_tokens_that_are_not_keys():
    x, y = mqar_batch(4000, 32, 4, 64, torch.Generator().manual_seed(0))
    counts = torch.bincount(x[:, 8:][y[:, 8:] == IGNORE], minlength=64).float()
    values_part = counts[32:]  # value tokens are never excluded
    assert values_part.min() > 0 and values_part.max() / values_part.min() < 1.15


@pytest.mark.parametrize(
    "args,message",
    [
        ((2, 32, 9, 64), "9 pairs need seq_len >= 36"),
        ((2, 30, 4, 30), "vocab_size must exceed"),
        ((2, 31, 4, 64), "seq_len must be even"),
        ((2, 2, 1, 64), "seq_len must be an int >= 4"),
        ((-1, 32, 4, 64), "batch_size must be a positive int"),
    ],
)
def test_impossible_arguments_are_refused(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        mqar_batch(*args)


def test_bad_generator_and_device_are_refused():
    with pytest.raises(TypeError, match="generator must be None or a torch.Generator"):
        mqar_batch(2, 32, 4, 64, generator=0)
    with pytest.raises(ValueError, match="device must be a torch device"):
        mqar_batch(2, 32, 4, 64, device="tpu")


@pytest.mark.parametrize("a", [1e-9, 1.0, 1000.0])
def test_extreme_query_spacing_still_makes_valid_batches(a):
    x, y = mqar_batch(8, 64, 4, 128, torch.Generator().manual_seed(0), power_a=a)
    assert ((y != IGNORE).sum(-1) == 4).all()


def test_metrics_tell_recall_from_the_own_values_plateau():
    x, y = mqar_batch(500, 32, 4, 64, torch.Generator().manual_seed(1))
    oracle = torch.where(y != IGNORE, y, 0)
    wrong_value = torch.where(y != IGNORE, x[:, 1:8:2].roll(1, dims=1).repeat_interleave(8, 1), 0)  # one of the others
    assert mqar_accuracy(oracle, y) == 1.0 and own_value_fraction(oracle, y) == 1.0
    assert own_value_fraction(wrong_value, y) == 1.0 and mqar_accuracy(wrong_value, y) < 0.3
    assert own_value_fraction(torch.zeros_like(y), y) == 0.0


def run(*args):
    return subprocess.run(["causal-rn-mqar", *args], capture_output=True, text=True)


def test_command_trains_resumes_and_reports(tmp_path):
    base = [
        "--kind",
        "transformer",
        "--seq_len",
        "8",
        "--pairs",
        "2",
        "--vocab_size",
        "16",
        "--eval_batch",
        "20",
        "--eval_every",
        "5",
        "--d_model",
        "16",
        "--quiet",
        "--out",
        str(tmp_path),
    ]
    out = run(*base, "--iterations", "10")
    assert out.returncode == 0, out.stderr
    assert "held-out accuracy" in out.stdout and "1/k = 50.0%" in out.stdout and "10 iterations" in out.stdout
    s = json.loads((tmp_path / "summary.json").read_text())
    assert (s["kind"], s["pairs"], s["seq_len"], s["iterations"]) == ("transformer", 2, 8, 10)
    again = run(*base, "--iterations", "10")  # a second run on the same folder: reported, not retrained
    assert again.returncode == 0 and json.loads((tmp_path / "summary.json").read_text())["date"] == s["date"]
    more = run(*base, "--iterations", "20", "--extend")
    assert more.returncode == 0 and "resuming" in more.stdout + more.stderr
    assert json.loads((tmp_path / "summary.json").read_text())["iterations"] == 20


@pytest.mark.parametrize(
    "args,message",
    [
        (["--pairs", "9"], "9 pairs need seq_len >= 36"),
        (["--seq_len", "64"], "vocab_size must exceed seq_len"),
        (["--preset", "paper"], "invalid choice: 'paper'"),
        (["--kind", "bi_rn"], "invalid choice: 'bi_rn'"),
    ],
)
def test_command_refuses_impossible_options_before_work(tmp_path, args, message):
    out = run(*args, "--quiet", "--out", str(tmp_path / "run"))
    assert out.returncode == 2 and message in out.stderr and not (tmp_path / "run").exists()


def stored_runs():
    return sorted(p.parent for p in RESULTS.glob("*/summary.json"))


def test_stored_runs_are_what_their_names_say():
    runs = stored_runs()
    if not runs:
        pytest.skip("no stored MQAR runs")
    for path in runs:
        s = json.loads((path / "summary.json").read_text())
        t = s["task_config"]
        if path.name.startswith("mqar-cpu-"):
            assert path.name == run_name(
                mqar_run(s["kind"], t["seq_len"], t["pairs"], s["train_config"]["optim"]["lr"], "cpu", s["seed"])
            )
        cols = read_metrics(path / "metrics.csv")
        its = [int(i) for i, a in zip(cols["iteration"], cols["accuracy"]) if not math.isnan(a)]
        acc = [a for a in cols["accuracy"] if not math.isnan(a)]
        first = next((i for i, a in zip(its, acc) if a >= 0.99), None)
        assert s["iterations_to_99"] == first and len(cols["iteration"]) == s["iterations"]
        assert abs(acc[-1] - s["accuracy"]) < 1e-6 and its[-1] == s["iterations"]  # the summary is the last evaluation
        assert s["chance"] == 1 / t["pairs"]


def test_the_sweep_used_each_kinds_chosen_rate():
    done = [k for k in MQAR_KINDS if chosen_lr(k, ROOT) is not None]
    if not done:
        pytest.skip("no stored learning-rate sweep")
    for kind in done:
        lr = chosen_lr(kind, ROOT)
        assert lr in MQAR_LRS
        for T, k in sweep_points():
            path = run_path(ROOT, mqar_run(kind, T, k, lr))
            if path.exists():
                assert json.loads((path / "summary.json").read_text())["train_config"]["optim"]["lr"] == lr
