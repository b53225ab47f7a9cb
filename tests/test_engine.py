"""The one training loop under every task: exact resume after a signal (copying, language modelling, vision), the
non-finite guard, signals during the final evaluation, cached runs that must match, configs that refuse nonsense."""

import csv, json, os, signal
from dataclasses import replace
from pathlib import Path

import pytest
import torch
from torch.nn.modules.module import register_module_forward_hook

from causal_rn.copying import CopyTask, copy_run_config, run_copy
from causal_rn.lm import lm_run_config
from causal_rn.model import Model
from causal_rn.runs import read_checkpoint
from causal_rn.text import python_reference_corpus
from causal_rn.config import OptimConfig, RunMismatch, TrainConfig, train_config
from causal_rn.processes import RunInterrupted
from causal_rn.train import fit
from causal_rn.vision import digits_data
from causal_rn.vision_experiments import vision_run_config

TINY_MODEL = dict(d_model=8, n_blocks=1)
QUIET = dict(progress=False, log=lambda *a: None)


def tiny_copy(**train):
    return copy_run_config(
        "causal_rn", "cpu", 2, model=TINY_MODEL, train={**dict(batch_size=4, iterations=12), **train}
    )


def tiny_lm(**train):
    return lm_run_config(
        "linear_causal_rn",
        "cpu",
        model=TINY_MODEL,
        text=python_reference_corpus()[:20_000],
        train={**dict(context=16, batch_size=4, iterations=12, eval_every=4, eval_batches=1), **train},
    )


def tiny_vision(**train):
    return vision_run_config(
        "linear_bi_rn",
        digits_data(),
        "cpu",
        model=TINY_MODEL,
        train={**dict(batch_size=700, iterations=12, eval_every=4), **train},
    )  # 2 batches an epoch


def metric_rows(out):
    return [
        {k: v for k, v in r.items() if k not in ("seconds",)} for r in csv.DictReader(open(Path(out) / "metrics.csv"))
    ]


def interrupt_after(forwards: int):
    "A hook that sends this process SIGINT during the model forward number `forwards` + 1 (training forwards only)."
    calls = [0]

    def hook(module, args, output):
        if isinstance(module, Model) and module.training:
            calls[0] += 1
            if calls[0] == forwards + 1:
                os.kill(os.getpid(), signal.SIGINT)

    return register_module_forward_hook(hook)


@pytest.mark.parametrize("make", [tiny_copy, tiny_lm, tiny_vision], ids=["copy", "lm", "vision"])
def test_resume_after_a_signal_is_bit_exact(make, tmp_path):
    model_cfg, task, cfg = make(checkpoint_every=3)
    fit(model_cfg, task, cfg, tmp_path / "whole", **QUIET)
    model_cfg, task, cfg = make(checkpoint_every=3)  # a fresh task: no state carried over
    handle = interrupt_after(7)
    try:
        with pytest.raises(RunInterrupted, match="SIGINT: stopped after iteration 8"):
            fit(model_cfg, task, cfg, tmp_path / "cut", **QUIET)
    finally:
        handle.remove()
    assert read_checkpoint(tmp_path / "cut" / "checkpoint.pt")["iteration"] == 8
    model_cfg, task, cfg = make(checkpoint_every=3)
    s = fit(model_cfg, task, cfg, tmp_path / "cut", **QUIET)
    assert metric_rows(tmp_path / "cut") == metric_rows(tmp_path / "whole")  # every value, every iteration
    whole = json.loads((tmp_path / "whole" / "summary.json").read_text())
    for key in ("final_loss", "parallel_accuracy", "final_valid_loss", "final_test_accuracy"):
        assert s.get(key) == whole.get(key)


class EvaluationInterrupted(CopyTask):
    "A copying task whose final evaluation receives `signals` SIGINTs."

    signals = 1

    def summary(self, model, rows, device):
        for _ in range(self.signals):
            os.kill(os.getpid(), signal.SIGINT)
        return super().summary(model, rows, device)


def test_a_signal_during_the_final_evaluation(tmp_path):
    model_cfg, task, cfg = tiny_copy()
    once = EvaluationInterrupted(task.cfg)
    with pytest.raises(
        RunInterrupted, match="during the final evaluation: the evaluation finished and the run's summary is written"
    ):
        fit(model_cfg, once, cfg, tmp_path / "once", **QUIET)
    assert json.loads((tmp_path / "once" / "summary.json").read_text())["iterations"] == 12

    twice = EvaluationInterrupted(task.cfg)
    twice.signals = 2
    with pytest.raises(RunInterrupted, match="final evaluation was cut short; the run is trained and checkpointed"):
        fit(model_cfg, twice, cfg, tmp_path / "twice", **QUIET)
    assert not (tmp_path / "twice" / "summary.json").exists()
    assert read_checkpoint(tmp_path / "twice" / "checkpoint.pt")["iteration"] == 12
    s = fit(model_cfg, CopyTask(task.cfg), cfg, tmp_path / "twice", **QUIET)  # the same command: evaluates
    assert s["iterations"] == 12 and len(metric_rows(tmp_path / "twice")) == 12


def test_non_finite_values_inside_the_model_stop_the_run_safely(tmp_path):
    from causal_rn.blocks import RelationBlock

    model_cfg, task, cfg = tiny_copy(checkpoint_every=2)
    model_cfg = replace(model_cfg, n_blocks=2)
    calls = [0]

    def poison(module, args, output):
        if isinstance(module, RelationBlock):
            calls[0] += 1
            if calls[0] > 8:
                return output * float("nan")  # from iteration 5 on, block 1 emits NaN: block 2's relation refuses it

    handle = register_module_forward_hook(poison)
    try:
        with pytest.raises(FloatingPointError) as e:
            fit(model_cfg, task, cfg, tmp_path, **QUIET)
    finally:
        handle.remove()
    message = str(e.value)
    assert "non-finite values at iteration 5" in message and "contains NaN or inf" in message
    assert f"{tmp_path / 'checkpoint.pt'} (iteration 4)" in message
    assert read_checkpoint(tmp_path / "checkpoint.pt")["iteration"] == 4
    assert all(torch.isfinite(v).all() for v in read_checkpoint(tmp_path / "checkpoint.pt")["model"].values())


def test_cached_runs_must_match_the_request(tmp_path):
    kw = dict(model=TINY_MODEL, train_kw=dict(batch_size=4, iterations=5), root=tmp_path, progress=False)
    s = run_copy("r", "causal_rn", "cpu", 2, **kw)
    assert run_copy("r", "causal_rn", "cpu", 2, **kw) == json.loads(json.dumps(s))
    with pytest.raises(RunMismatch, match="model_config.kind: 'causal_rn' stored, 'transformer' asked"):
        run_copy("r", "transformer", "cpu", 2, **kw)
    with pytest.raises(RunMismatch, match="task_config.string_size: 2 stored, 3 asked"):
        run_copy("r", "causal_rn", "cpu", 3, **kw)
    assert run_copy("r", "transformer", "cpu", 2, force=True, **kw)["kind"] == "transformer"


def test_free_fields_may_change_on_resume_and_targets_too(tmp_path):
    model_cfg, task, cfg = tiny_lm(checkpoint_every=4)
    fit(model_cfg, task, replace(cfg, iterations=8), tmp_path, **QUIET)
    (tmp_path / "summary.json").unlink()  # as if stopped at iteration 8
    model_cfg, task, cfg = tiny_lm(checkpoint_every=5, eval_every=2)  # new checkpoint interval and evaluation schedule
    s = fit(model_cfg, task, cfg, tmp_path, **QUIET)
    assert s["iterations"] == 12


def test_configs_refuse_nonsense():
    with pytest.raises(ValueError, match="unknown training options \\['iterationss'\\]"):
        tiny_copy(iterationss=3)
    with pytest.raises(ValueError, match="eval_every must be an int >= 0"):
        TrainConfig(eval_every=-1)
    with pytest.raises(TypeError, match="amp must be True or False"):
        TrainConfig(amp="yes")
    with pytest.raises(ValueError, match="min_lr must be <= 0.001"):
        OptimConfig(lr=1e-3, min_lr=1e-2)
    with pytest.raises(ValueError, match="batch_size=5 is the global batch and must divide evenly over 2"):
        job = dict(WORLD_SIZE="2", RANK="0", MASTER_ADDR="127.0.0.1", MASTER_PORT="29999")  # a whole torchrun job
        os.environ.update(job)
        try:
            fit(
                *copy_run_config("causal_rn", "cpu", 2, model=TINY_MODEL, train=dict(batch_size=5, iterations=1)),
                **QUIET,
            )
        finally:
            for k in job:
                del os.environ[k]
    assert train_config(lr=1e-3, iterations=4).optim.lr == 1e-3
    with pytest.raises(ValueError, match="extending needs a target beyond"):
        raise_extend()


def raise_extend(tmp=None):
    import tempfile

    with tempfile.TemporaryDirectory() as d:
        model_cfg, task, cfg = tiny_copy()
        fit(model_cfg, task, replace(cfg, iterations=3), d, **QUIET)
        fit(model_cfg, CopyTask(task.cfg), replace(cfg, iterations=3), d, extend=True, **QUIET)
