"The console command causal-rn-bench, as a user runs it."
import json, subprocess


def test_bench_help():
    out = subprocess.run(["causal-rn-bench", "--help"], check=True, capture_output=True, text=True).stdout
    for option in ("--out", "--quick", "--repeats", "--mem_limit_gb"):
        assert option in out


def test_bench_quick_writes_results(tmp_path):
    path = tmp_path / "bench.json"
    out = subprocess.run(["causal-rn-bench", "--quick", "--repeats", "1", "--out", str(path)],
                         check=True, capture_output=True, text=True).stdout
    assert "faster" in out and str(path) in out
    res = json.loads(path.read_text())
    assert res["quick"] is True and res["device"].startswith("cpu") and res["torch"]
    seen = {(r["case"], r["passes"], r["provider"]) for r in res["rows"]}
    for provider in ("materialised", "chunked", "linear"):
        assert ("copy", "forward+backward", provider) in seen and ("long", "forward+backward", provider) in seen
    chunked = next(r for r in res["rows"] if (r["case"], r["passes"], r["provider"]) == ("copy", "forward+backward", "chunked"))
    assert max(chunked["max_rel_diff_vs_materialised"].values()) < 1e-5
    assert all(v["time"] > 0 for v in res["ratios"].values())
