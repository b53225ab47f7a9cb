"""Experiments as data: every stored run is a declared one with the configuration its declaration makes, every run
the README's table and the figures use is stored, and folder names follow from declarations alone."""

import json, re
from pathlib import Path

import pytest

from causal_rn.config import Run, differences, run_name, run_path
from causal_rn.reproduction import STATUS_EXPERIMENTS
from causal_rn.sweep import EXPERIMENTS, configure_run
from causal_rn.vision_experiments import heatmap_path

ROOT = Path(__file__).resolve().parents[1] / "results"


def declared(preset="cpu"):
    "name -> Run of every declared run (the smoke sweep is not stored)."
    out = {}
    for e in EXPERIMENTS.values():
        if e.name == "smoke" or preset not in e.presets:
            continue
        for r in e.runs(preset, None, ROOT):
            assert out.setdefault(run_name(r), r) == r, f"two different runs are named {run_name(r)}"
    return out


def test_every_stored_run_is_declared_and_every_declared_run_is_stored():
    stored = {p.parent.relative_to(ROOT).as_posix() for p in ROOT.glob("*/*/summary.json")}
    runs = {run_path(ROOT, r).relative_to(ROOT).as_posix() for r in declared().values()}
    assert stored - runs == set(), "run folders under results/ that no experiment declares"
    assert runs - stored == set(), "declared cpu runs that are not stored"
    assert len(stored) == 143


def test_every_declared_run_is_stored_with_the_configuration_its_declaration_makes():
    for name, r in declared().items():
        s = json.loads((run_path(ROOT, r) / "summary.json").read_text())
        assert differences(s, *configure_run(r)) == [], name  # identity and targets, field by field
        assert (run_path(ROOT, r) / "metrics.csv").exists(), name


def test_the_tables_experiments_have_all_their_files():
    for name in STATUS_EXPERIMENTS:
        steps, waiting = EXPERIMENTS[name].plan("cpu", None, ROOT)
        assert waiting is None, (name, waiting)
        for r in EXPERIMENTS[name].runs("cpu", None, ROOT):
            assert (run_path(ROOT, r) / "summary.json").exists() and (run_path(ROOT, r) / "metrics.csv").exists()
    assert heatmap_path(ROOT).exists()


@pytest.mark.parametrize("preset", ["paper", "zoology"])
def test_the_gpu_presets_are_declared_and_configure(preset):
    runs = declared(preset)
    assert runs, preset
    for name, r in runs.items():
        if r.task in ("lm", "vision"):
            continue  # their paper presets need data folders (--set data=..., data_dir=...)
        m, t, c = configure_run(r)
        assert (m.d_model, m.n_blocks) in ((192, 12), (64, 2), (128, 2), (256, 2), (512, 2)), name


def test_names_are_single_plain_folder_names():
    for preset in ("cpu", "paper", "zoology"):
        for name in declared(preset):
            assert re.fullmatch(r"[a-z0-9][A-Za-z0-9._-]*", name) and ".." not in name, name


def test_a_run_declaration_is_checked():
    with pytest.raises(ValueError, match="named_by names"):
        Run("copy", "causal_rn", named_by=("lr",))
    with pytest.raises(ValueError, match="non-empty string"):
        Run("", "causal_rn")
