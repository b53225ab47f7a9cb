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


def test_readme_commands_table_is_generated_from_results():
    "The README's table of one sweep command per experiment, with its runs and recorded time, is current."
    from causal_rn.reproduction import COMMANDS_BEGIN, COMMANDS_END, commands_markdown, readme_with_status

    readme = (ROOT / "README.md").read_text()
    table = commands_markdown(ROOT / "results")
    assert readme_with_status(readme, table, COMMANDS_BEGIN, COMMANDS_END) == readme, (
        "README commands table is stale: run causal-rn-status --readme README.md"
    )
    for name in ("fig2", "fig3", "fig4", "lr-sweep", "mqar", "lm", "vision", "heatmaps"):
        assert f"`causal-rn-sweep {name}`" in table, name


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
    "Every seed run of Figs. 2-4 and the lr sweep is stored with the seed and lr its declaration says."
    from causal_rn.config import run_name, run_path
    from causal_rn.sweep import EXPERIMENTS

    runs = [r for name in ("fig2", "fig3", "fig4", "lr-sweep") for r in EXPERIMENTS[name].runs()]
    assert len({run_name(r) for r in runs}) == 13 + 6 + 42 + 10 - 2  # the lr sweep's two runs at 5e-4 are Fig. 4's
    for r in runs:
        s = json.loads((run_path(ROOT / "results", r) / "summary.json").read_text())
        assert s["train_config"]["seed"] == r.seed, r
        assert s["train_config"]["optim"]["lr"] == r.train.get("lr", 5e-4), r
        assert s["convergence_rule"].startswith("first of 3 consecutive"), r
