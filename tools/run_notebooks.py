"""Execute notebooks in place so that their stored outputs are what the code produces now.

    python tools/run_notebooks.py nbs/10_runs.ipynb nbs/13_training.ipynb      # then nbdev_clean
    python tools/run_notebooks.py --flags slow nbs/17_copy_ablations.ipynb     # also run the #| slow cells

Cells flagged `#| slow` or `#| gpu` (settings.ini's tst_flags) are skipped unless named in --flags, and keep the
outputs they have; every other code cell is run in a fresh kernel with the notebook's folder as working directory
(as nbdev_test does) and its outputs replaced. A cell that raises stops the notebook and nothing is written.
"""

import argparse, os, re, sys, time
from pathlib import Path

from execnb.nbio import read_nb, write_nb
from execnb.shell import CaptureShell

FLAGS = ("slow", "gpu")


def flags_of(source: str) -> set[str]:
    "The nbdev test flags of a cell: `#| slow`, `#| gpu` (also several on one line)."
    return {
        f
        for line in source.splitlines()
        if line.startswith("#|")
        for f in re.split(r"[\s,]+", line[2:].strip())
        if f in FLAGS
    }


def run(path: Path, run_flags: set[str]) -> float:
    nb = read_nb(path)
    shell, t0 = CaptureShell(), time.perf_counter()

    current = {}

    def skip(cell):
        if cell.cell_type != "code":
            return True
        if "#| eval: false" in cell.source or flags_of(cell.source) - run_flags:
            return True
        cell.outputs = []  # a cell that prints nothing now must not keep old output
        current["cell"] = cell
        return False

    cwd = os.getcwd()
    os.chdir(path.parent)
    try:
        shell.run_all(nb, exc_stop=True, preproc=skip)
    except BaseException:
        cell = current.get("cell")
        if cell is not None:
            print(f"{path.name}: the cell {cell.get('id')} failed:\n{cell.source[:600]}", file=sys.stderr)
        raise
    finally:
        os.chdir(cwd)
    write_nb(nb, path)
    return time.perf_counter() - t0


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("notebooks", nargs="+", type=Path)
    ap.add_argument("--flags", default="", help="flags whose cells run too, e.g. 'slow' or 'slow gpu'")
    args = ap.parse_args()
    for p in args.notebooks:
        print(f"{p}: {run(p.resolve(), set(args.flags.split())):.1f} s", flush=True)
