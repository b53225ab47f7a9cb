"""Quiet-machine speed of the relation operator at two versions of causal_rn, measured side by side in one run.

    python tools/compare_versions.py BASE_REV [--rounds 3] [--out results/relation_bench/before-after-cpu.json]

The package at BASE_REV (`git archive`) and the working tree's package are timed alternately, each measurement in a
fresh process (`causal_rn.benchmark.measure`, forward + backward, the best of several runs), at the benchmark's copy and
target shapes, for `rounds` rounds; the file records every time, the medians of the rounds and their ratio.
"""

import argparse, json, os, statistics, subprocess, sys, tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
SHAPES = {"copy": (8, 514, 192), "target": (1, 512, 768)}
MEASURE = (
    "import json, sys; from causal_rn.benchmark import measure; "
    "r = measure(sys.argv[1], *map(int, sys.argv[2:5]), repeats=int(sys.argv[5])); print(json.dumps(r['time_s']))"
)


def timed(pythonpath: str, provider: str, shape, repeats: int) -> float:
    env = {**os.environ, "PYTHONPATH": pythonpath}
    out = subprocess.run(
        [sys.executable, "-c", MEASURE, provider, *map(str, shape), str(repeats)],
        env=env,
        capture_output=True,
        text=True,
        check=True,
        cwd=tempfile.gettempdir(),
    )
    return json.loads(out.stdout.strip().splitlines()[-1])


if __name__ == "__main__":
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("base", help="the git revision to compare against, e.g. HEAD~1")
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--provider", default="chunked")
    ap.add_argument("--out", default="results/relation_bench/before-after-cpu.json")
    args = ap.parse_args()
    base = subprocess.run(
        ["git", "rev-parse", "--short", args.base], cwd=ROOT, capture_output=True, text=True, check=True
    ).stdout.strip()
    with tempfile.TemporaryDirectory() as old:
        archive = subprocess.run(
            ["git", "archive", base, "causal_rn"], cwd=ROOT, capture_output=True, check=True
        ).stdout
        subprocess.run(["tar", "-x", "-C", old], input=archive, check=True)
        versions = {f"before ({base})": old, "now (working tree)": str(ROOT)}
        times = {(v, s): [] for v in versions for s in SHAPES}
        for r in range(args.rounds):
            for s, shape in SHAPES.items():
                for v, path in versions.items():
                    times[(v, s)].append(timed(path, args.provider, shape, args.repeats))
                    print(f"round {r + 1} {s:>6} {v:>22}: {times[(v, s)][-1]:.3f} s", flush=True)
    sys.path.insert(0, str(ROOT))
    from causal_rn.runs import machine, write_json

    rows = []
    for s, shape in SHAPES.items():
        before, now = (statistics.median(times[(v, s)]) for v in versions)
        rows.append(
            dict(
                case=s,
                B=shape[0],
                T=shape[1],
                H=shape[2],
                provider=args.provider,
                passes="forward+backward",
                before_s=round(before, 4),
                now_s=round(now, 4),
                now_over_before=round(now / before, 3),
                times_before=times[(list(versions)[0], s)],
                times_now=times[(list(versions)[1], s)],
            )
        )
        print(f"{s}: before {before:.3f} s, now {now:.3f} s, ratio {now / before:.2f}")
    write_json(
        ROOT / args.out,
        dict(
            machine("cpu"),
            base=base,
            rounds=args.rounds,
            rows=rows,
            method="medians over rounds of the best of --repeats runs, fresh process each, alternating",
        ),
    )
