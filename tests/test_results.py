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
    assert summary["iterations_to_99"] == converged_at(
        [int(r["iteration"]) for r in rows], [float(r["parallel_accuracy"]) for r in rows]
    )


def test_readme_status_table_is_generated_from_results():
    "The README's reproduction-status table is exactly what causal-rn-status computes from results/ now."
    from causal_rn.reproduction import readme_with_status, status_findings, status_markdown

    readme = (ROOT / "README.md").read_text()
    table = status_markdown(status_findings(ROOT / "results"))
    assert readme_with_status(readme, table) == readme, (
        "README status table is stale: run causal-rn-status --readme README.md"
    )
    assert table.count("\n") >= 10 and "| **not run**" not in table


def test_status_command_checks_and_refuses(tmp_path):
    from causal_rn.reproduction import main

    assert main(["--results", str(ROOT / "results"), "--readme", str(ROOT / "README.md"), "--check"]) == 0
    stale = tmp_path / "README.md"
    stale.write_text((ROOT / "README.md").read_text().replace("**yes**", "**no**", 1))
    assert main(["--results", str(ROOT / "results"), "--readme", str(stale), "--check"]) == 1
    assert main(["--results", str(ROOT / "results"), "--readme", str(stale)]) == 0
    assert stale.read_text() == (ROOT / "README.md").read_text()
    assert [p.name for p in tmp_path.iterdir()] == ["README.md"], "the rewrite left a temporary file"
    assert main(["--results", str(tmp_path / "missing")]) == 2
    assert main(["--results", str(ROOT / "results"), "--readme", str(tmp_path / "nope.md")]) == 2
    (tmp_path / "plain.md").write_text("no markers")
    assert main(["--results", str(ROOT / "results"), "--readme", str(tmp_path / "plain.md")]) == 2


def test_seed_runs_match_the_stored_configurations():
    "Every seed run of Figs. 2-4 and the lr sweep is stored with the seed and lr its name says."
    from causal_rn.reproduction import (
        ABLATION_SEEDED,
        LR_GRID,
        LR_KINDS,
        SCALING_KINDS,
        SEEDS,
        ablation_run_name,
        lr_run_name,
        scaling_run_name,
        scaling_sizes,
        curve_run_name,
        CURVE_KINDS,
    )
    import json

    names = [(ablation_run_name(l, seed=s), s, 5e-4) for l in ABLATION_SEEDED for s in SEEDS]
    names += [(curve_run_name(k, seed=s), s, 5e-4) for k in CURVE_KINDS for s in SEEDS]
    names += [(scaling_run_name(k, L, seed=s), s, 5e-4) for k in SCALING_KINDS for L in scaling_sizes(k) for s in SEEDS]
    names += [(lr_run_name(k, lr), 0, lr) for k in LR_KINDS for lr in LR_GRID]
    for name, seed, lr in names:
        s = json.loads((ROOT / "results/copy" / name / "summary.json").read_text())
        assert s["train_config"]["seed"] == seed and s["train_config"]["optim"]["lr"] == lr, name
        assert s["convergence_rule"].startswith("first of 3 consecutive"), name
