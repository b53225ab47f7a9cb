"""The GPU plan (tools/gpu_plan.py) runs end to end on the CPU at its tiny size, so the first GPU minute is spent on
the GPU: every stage done, each stage's JSON written with the machine, the Fig. 4 runs finished under its output."""

import json, subprocess, sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


def test_the_gpu_plan_runs_on_the_cpu_at_its_tiny_size(tmp_path):
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/gpu_plan.py"), "--device", "cpu", "--tiny", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=600,
    )
    assert out.returncode == 0, out.stdout + out.stderr
    plan = json.loads((tmp_path / "plan.json").read_text())
    assert [s["stage"] for s in plan["stages"]] == ["check", "bench", "fig4-L128", "fig4-L256"]
    assert all(s["status"] == "done" for s in plan["stages"]), plan
    check = json.loads((tmp_path / "check.json").read_text())
    assert check["ok"] == {"chunked": True, "naive": True} and check["torch"] and "device" in check
    bench = json.loads((tmp_path / "bench.json").read_text())
    assert bench["ceiling"]["exps_per_s"] > 0
    assert any(0 < (r.get("fraction_of_ceiling") or 0) for r in bench["rows"])
    for L in (128, 256):
        fig = json.loads((tmp_path / f"fig4-L{L}.json").read_text())
        assert [r["status"] for r in fig["runs"]] == ["finished", "finished"], fig
        assert fig["runs"][0]["relation_impl"] == "chunked"  # no Triton on a CPU: the chunked path


def test_the_gpu_plan_refuses_cuda_without_a_gpu(tmp_path):
    import torch

    if torch.cuda.is_available():
        return
    out = subprocess.run(
        [sys.executable, str(ROOT / "tools/gpu_plan.py"), "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert out.returncode == 2 and "no CUDA GPU is visible" in out.stderr
    assert list(tmp_path.iterdir()) == []
