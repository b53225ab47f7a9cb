"""Executing a notebook, as JupyterLab's Run All would, reads the stored results and writes nothing; the explorers open
quickly."""

import hashlib, os, re, time
from pathlib import Path

import pytest
from execnb.nbio import read_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parents[1]


def tree_digest(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def run_all_but_gpu(name: str) -> float:
    """Execute every cell of nbs/`name` except `#| gpu` ones (slow cells too), in nbs/, without saving it; the seconds
    taken."""
    nb, cwd = read_nb(ROOT / "nbs" / name), os.getcwd()
    gpu = lambda cell: cell.cell_type != "code" or re.search(r"^#\|.*\bgpu\b", cell.source, re.MULTILINE) is not None
    os.chdir(ROOT / "nbs")
    try:
        t0 = time.perf_counter()
        CaptureShell().run_all(nb, exc_stop=True, preproc=gpu)
        return time.perf_counter() - t0
    finally:
        os.chdir(cwd)


def test_explorers_notebook_runs_fast_and_writes_nothing():
    "Every cell, in under 2 minutes, from the shipped weights; results/ byte-identical afterwards."
    before = tree_digest(ROOT / "results")
    seconds = run_all_but_gpu("25_explorers.ipynb")
    assert tree_digest(ROOT / "results") == before, "executing 25_explorers changed files under results/"
    assert seconds < 120, f"25_explorers took {seconds:.0f} s to execute"


@pytest.mark.parametrize(
    "name",
    [
        "06_relation_benchmark.ipynb",
        "08_model.ipynb",
        "17_copy_ablations.ipynb",
        "18_copy_curves.ipynb",
        "16_copy_experiments.ipynb",
        "19_copy_scaling.ipynb",
        "20_mqar.ipynb",
        "22_language_model.ipynb",
        "24_vision.ipynb",
        "26_sweep.ipynb",
    ],
)
def test_experiment_notebook_with_slow_cells_writes_nothing(name):
    "The slow cells report the stored runs (no checkpoint needed) and re-measure only when RERUN = True."
    before = tree_digest(ROOT / "results")
    run_all_but_gpu(name)
    assert tree_digest(ROOT / "results") == before, f"executing {name} changed files under results/"
