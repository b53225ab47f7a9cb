"The explorers notebook opens quickly from the shipped weights and never writes to results/ when executed."
import hashlib, os, time
from pathlib import Path

from execnb.nbio import read_nb
from execnb.shell import CaptureShell

ROOT = Path(__file__).resolve().parents[1]


def tree_digest(folder: Path) -> dict[str, str]:
    return {str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(folder.rglob("*")) if p.is_file()}


def test_explorers_notebook_runs_fast_and_writes_nothing():
    "Every cell (slow ones too, as JupyterLab's Run All would), in under 2 minutes, results/ byte-identical afterwards."
    before = tree_digest(ROOT / "results")
    nb, cwd = read_nb(ROOT / "nbs" / "20_explorers.ipynb"), os.getcwd()
    os.chdir(ROOT / "nbs")
    try:
        t0 = time.perf_counter()
        CaptureShell().run_all(nb, exc_stop=True)
        seconds = time.perf_counter() - t0
    finally: os.chdir(cwd)
    assert tree_digest(ROOT / "results") == before, "executing 20_explorers changed files under results/"
    assert seconds < 120, f"20_explorers took {seconds:.0f} s to execute"
    assert not (ROOT / "results" / "explore" / "relation-maps-cpu-L16.npz").exists()
