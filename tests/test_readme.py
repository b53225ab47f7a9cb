"README.md is checked against index.ipynb (the docs' home page), the sidebar and the package's commands."

import configparser, re, subprocess, sys
from pathlib import Path

import nbformat
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[1]
README = (ROOT / "README.md").read_text()


def index_text() -> str:
    nb = nbformat.read(ROOT / "nbs" / "index.ipynb", as_version=4)
    return "\n".join(c.source for c in nb.cells)


def sidebar_notebooks() -> list[str]:
    contents = yaml.safe_load((ROOT / "nbs" / "sidebar.yml").read_text())["website"]["sidebar"]["contents"]
    out = []
    for entry in contents:
        out += [entry] if isinstance(entry, str) else entry["contents"]
    return [Path(n).stem for n in out if n != "index.ipynb"]


def test_reading_order_matches_index_sidebar_and_files():
    from_index = re.findall(r"^\s*\d+\. \[[^\]]+\]\((\d\d[a-z]?_\w+)\.ipynb\)", index_text(), re.MULTILINE)
    from_readme = re.findall(r"^\d+\. `nbs/(\d\d[a-z]?_\w+)\.ipynb`", README, re.MULTILINE)
    on_disk = sorted(p.stem for p in (ROOT / "nbs").glob("[0-9][0-9]*_*.ipynb"))
    assert from_index == on_disk, "index.ipynb's reading order must list every numbered notebook, in order"
    assert from_readme == from_index, "README's reading order differs from index.ipynb's"
    assert sidebar_notebooks() == from_index, "nbs/sidebar.yml differs from index.ipynb's reading order"


def test_main_job_command_is_the_same_and_valid():
    main_job = re.search(r"causal-rn-copy[^\n`]*", README).group(0).strip()
    assert main_job in index_text(), f"index.ipynb does not show the README's main job: {main_job}"
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    assert "causal-rn-copy=causal_rn.copying:main" in cfg["DEFAULT"]["console_scripts"]
    help_text = subprocess.run(["causal-rn-copy", "--help"], capture_output=True, text=True, check=True).stdout
    for option in re.findall(r"--\w+", main_job):
        assert option in help_text, f"the README's main job uses {option}, which causal-rn-copy does not take"


def test_fresh_machine_commands():
    commands = re.findall(r"^python3 -m venv .*$", README, re.MULTILINE)
    assert len(commands) == 2, "README must give two fresh-machine commands (main job, tests)"
    assert commands[0].endswith("causal-rn-copy --stop_accuracy 0.99 --out runs/copy-main")
    assert commands[1].endswith("pytest -q tests")
    assert all("pip install torch==2.13.0" in c for c in commands)
    assert "pip install -e . &&" in commands[0] and "[dev]" not in commands[0], (
        "the main job installs the library alone"
    )
    assert 'pip install -e ".[dev]"' in commands[1], "the tests need the dev tools"
    assert "--index-url https://download.pytorch.org/whl/cpu" in README, "say how to get the CPU build elsewhere"
    assert "--allow-root" in README, "say how to start JupyterLab as root"


def requirement_names(key: str) -> set[str]:
    cfg = configparser.ConfigParser()
    cfg.read(ROOT / "settings.ini")
    return {re.split(r"[<>=!~;\[ ]", r)[0].lower() for r in cfg["DEFAULT"][key].split()}


def test_install_only_list_is_settings_requirements():
    listed = re.search(r"needs only ([\w, ]+) at run time", README).group(1)
    names = {n.strip().lower() for n in re.split(r",|\band\b", listed) if n.strip()}
    assert names == requirement_names("requirements"), "README's run-time list differs from settings.ini's requirements"
    main_job = re.search(r"It installs the\s+library alone \(([^:]+):", README).group(1)
    assert {n.strip().lower() for n in main_job.split(",")} == requirement_names("requirements")


PYTHON_SNIPPETS = re.findall(r"```python\n(.*?)```", README, re.DOTALL)


def test_readme_has_python_snippets():
    assert len(PYTHON_SNIPPETS) >= 3


@pytest.mark.parametrize("k", range(len(PYTHON_SNIPPETS)))
def test_python_snippet_runs_on_its_own(k, tmp_path):
    "Each snippet in a fresh interpreter, in an empty folder: no import or name borrowed from another snippet."
    out = subprocess.run(
        [sys.executable, "-c", PYTHON_SNIPPETS[k]], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert out.returncode == 0, f"README snippet {k} fails on its own:\n{PYTHON_SNIPPETS[k]}\n{out.stderr[-2000:]}"
    if "count_params" in PYTHON_SNIPPETS[k]:
        assert "1.34M parameters" in out.stdout, out.stdout
