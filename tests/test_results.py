"The stored results agree with the rules that the notebooks state."
import csv, json
from pathlib import Path

import pytest

from causal_rn.copying import CONVERGENCE_RULE, converged_at

ROOT = Path(__file__).resolve().parents[1]
COPY_RUNS = sorted(p.parent for p in (ROOT / "results" / "copy").glob("*/summary.json"))


def test_there_are_stored_copy_runs():
    assert len(COPY_RUNS) >= 20


@pytest.mark.parametrize("run", COPY_RUNS, ids=lambda p: p.name)
def test_copy_run_records_the_one_convergence_rule(run):
    "Every copy summary names the rule, and its iterations_to_99 is that rule applied to its own metrics.csv."
    summary = json.loads((run / "summary.json").read_text())
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    assert summary["convergence_rule"] == CONVERGENCE_RULE
    assert summary["iterations_to_99"] == converged_at([int(r["iteration"]) for r in rows],
                                                       [float(r["parallel_accuracy"]) for r in rows])
