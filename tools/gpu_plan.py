"""The plan for a short time on a GPU: four stages, each time-boxed, each writing its results when it ends.

    python tools/gpu_plan.py                         # on the GPU: every stage, in a budget of --budget seconds
    python tools/gpu_plan.py --device cpu --tiny     # the same plan end to end on the CPU, at a tiny size, in seconds

1. check      the relation operator on the device against float64 naive on the CPU: triton, chunked and naive,
              causal and bidirectional, layer and rms, odd T and H; forward in float32 / bf16 / fp16, gradients
              in float32.
2. bench      the exp ceiling of the device (a Triton kernel of exp2 in registers on a GPU, torch.exp on a CPU), and
              the relation's forward and forward+backward at the copy shape (B 320, T 514, H 192) and the paper's
              language-model shape (B 32, T 256, H 3072), as a fraction of that ceiling, beside SDPA.
3. fig4-L128  Fig. 4 at the paper preset (d 192, 12 blocks, batch 320, lr 5e-4, up to 2000 iterations, bf16) for
              CausalRN (the Triton kernel; the chunked path if stage 1 failed it) and the Transformer, strings of 128.
4. fig4-L256  the same at 256, with the time that is left.

Each stage runs in its own process, stopped at its time box (SIGTERM: a training run writes its checkpoint and the
next run of the plan resumes it; SIGKILL 30 s later). Results go to --out (results/gpu/<device> by default): one
JSON per stage with the device, torch and triton versions, and plan.json with what each stage did. The Fig. 4 runs
are stored as runs under the results root (results/copy/scaling-paper-*), so `causal-rn-sweep fig4 --preset paper`
reports or resumes them. With --tiny every size is tiny and the runs go under --out, so the plan can be tested on a
CPU in CI before the first GPU minute is spent.
"""

import argparse, json, math, os, signal, subprocess, sys, time
from pathlib import Path

STAGES = ("check", "bench", "fig4-L128", "fig4-L256")
SHARE = {"check": 0.12, "bench": 0.2, "fig4-L128": 0.45}  # of the budget; fig4-L256 gets what is left
TOL = {"float32": 1e-4, "bfloat16": 3e-2, "float16": 5e-3}  # max |error| / max |reference|, forward


def versions(device: str) -> dict:
    import torch

    from causal_rn.runs import machine

    try:
        import triton

        tv = triton.__version__
    except ImportError:
        tv = None
    return dict(**machine(device), triton=tv, cuda=torch.version.cuda)


def write(out: Path, name: str, result: dict):
    from causal_rn.runs import write_json

    out.mkdir(parents=True, exist_ok=True)
    write_json(out / f"{name}.json", result)


# --- stage 1: correctness on the device ---------------------------------------------------------------------------
def check(device: str, tiny: bool) -> dict:
    import torch

    from causal_rn.relation import relation

    impls = ["chunked", "naive"] + (["triton"] if device == "cuda" else [])
    shapes = [(2, 7, 5), (1, 33, 24)] if tiny else [(2, 1, 5), (2, 7, 48), (2, 33, 100), (1, 63, 192), (2, 514, 192)]
    dtypes = {"float32": torch.float32, "bfloat16": torch.bfloat16, "float16": torch.float16}
    rows = []
    for B, T, H in shapes:
        g = torch.Generator().manual_seed(T * 1000 + H)
        q64, p64 = (
            torch.randn(B, T, H, generator=g, dtype=torch.float64),
            torch.randn(B, T, H, generator=g, dtype=torch.float64),
        )
        for causal in (True, False):
            for norm in ("layer", "rms"):
                kw = dict(causal=causal, norm=norm)
                q, p = q64.clone().requires_grad_(), p64.clone().requires_grad_()
                ref = relation(q, p, impl="chunked" if T > 64 else "naive", **kw)
                dq, dp = torch.autograd.grad(ref.sum(), (q, p))
                scale = ref.abs().max().item()
                for impl in impls:
                    if impl == "naive" and T > 64:
                        continue  # the materialised form at T 514 is for the CPU's float64 reference only
                    for name, dtype in dtypes.items():
                        row = dict(impl=impl, B=B, T=T, H=H, causal=causal, norm=norm, dtype=name)
                        try:
                            qd = q64.to(device, dtype).requires_grad_(name == "float32")
                            pd = p64.to(device, dtype).requires_grad_(name == "float32")
                            y = relation(qd, pd, impl=impl, **kw)
                            row["forward_error"] = (y.double().cpu() - ref.detach()).abs().max().item() / scale
                            if name == "float32":
                                gq, gp = torch.autograd.grad(y.sum(), (qd, pd))
                                row["grad_error"] = max(
                                    (gq.double().cpu() - dq).abs().max().item() / dq.abs().max().item(),
                                    (gp.double().cpu() - dp).abs().max().item() / dp.abs().max().item(),
                                )
                            row["ok"] = row["forward_error"] < TOL[name] and row.get("grad_error", 0.0) < 1e-3
                        except Exception as e:  # a kernel that fails to compile or run is a result too
                            row.update(ok=False, error=f"{type(e).__name__}: {str(e)[:300]}")
                        rows.append(row)
    ok = {impl: all(r["ok"] for r in rows if r["impl"] == impl) for impl in impls}
    return dict(rows=rows, ok=ok, triton_ok=ok.get("triton", False), tolerances=TOL)


# --- stage 2: speed against the hardware --------------------------------------------------------------------------
def exp_ceiling(device: str, tiny: bool) -> dict:
    "Exponentials per second the device can compute: exp2 in registers on a GPU, torch.exp in cache on a CPU."
    import torch

    if device != "cuda":
        from causal_rn.benchmark import exp_ceilings

        return dict(kind="torch.exp over a cache-sized buffer", exps_per_s=exp_ceilings(2**16)["in_cache_exps_per_s"])
    import triton
    import triton.language as tl

    @triton.jit
    def exp2_loop(x_ptr, n, ITERS: tl.constexpr, BLOCK: tl.constexpr):
        offs = tl.program_id(0) * BLOCK + tl.arange(0, BLOCK)
        x = tl.load(x_ptr + offs, mask=offs < n, other=0.0)
        for _ in range(ITERS):  # x stays in [0, 1): every exp2 is computed, none overflows
            x = tl.exp2(x) * 0.5 - 0.5
        tl.store(x_ptr + offs, x, mask=offs < n)

    n, iters, block = 2**24, 256, 1024
    x = torch.rand(n, device="cuda")
    grid = (triton.cdiv(n, block),)
    exp2_loop[grid](x, n, ITERS=iters, BLOCK=block)  # compile
    torch.cuda.synchronize()
    best = math.inf
    for _ in range(5):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        exp2_loop[grid](x, n, ITERS=iters, BLOCK=block)
        end.record()
        torch.cuda.synchronize()
        best = min(best, start.elapsed_time(end) / 1000)
    return dict(kind="a Triton kernel of exp2 in registers (one FMA beside each)", exps_per_s=n * iters / best)


def bench(device: str, tiny: bool, triton_ok: bool) -> dict:
    from causal_rn.benchmark import available, measure

    ceiling = exp_ceiling(device, tiny)
    shapes = {"tiny": (2, 34, 16)} if tiny else {"copy": (320, 514, 192), "paper LM": (32, 256, 3072)}
    providers = [p for p in ("triton", "chunked", "sdpa") if available(p, device) is None]
    if not triton_ok:
        providers = [p for p in providers if p != "triton"]
    rows = []
    for shape, (B, T, H) in shapes.items():
        for provider in providers:
            for backward in (False, True):
                try:
                    r = measure(provider, B, T, H, backward=backward, repeats=3, device=device, budget_s=20)
                    if r.get("exps_per_s"):
                        r["fraction_of_ceiling"] = r["exps_per_s"] / ceiling["exps_per_s"]
                except Exception as e:
                    r = dict(
                        provider=provider, B=B, T=T, H=H, backward=backward, error=f"{type(e).__name__}: {e}"[:300]
                    )
                rows.append(dict(shape=shape, **r))
    return dict(ceiling=ceiling, rows=rows)


# --- stages 3 and 4: Fig. 4 at the paper preset -------------------------------------------------------------------
def fig4(L: int, device: str, tiny: bool, triton_ok: bool, root: Path) -> dict:
    from causal_rn.config import Experiment, Run, run_path
    from causal_rn.copy_experiments import scaling_run
    from causal_rn.processes import RunInterrupted
    from causal_rn.runs import read_metrics
    from causal_rn.sweep import EXPERIMENTS, run_sweep

    impl = "triton" if triton_ok else "chunked"
    if tiny:  # the paper preset, shrunk: what it exercises is the plan, not the model
        small = dict(d_model=16, n_blocks=1)
        runs = [
            Run(
                "copy",
                k,
                "paper",
                {**small, **({"impl": impl} if k == "causal_rn" else {})},
                dict(
                    string_size=L // 32, batch_size=4, iterations=10, eval_batch=4, stop_accuracy=0.99, stop_patience=3
                ),
                0,
                "gpu-plan-tiny",
                ("string_size",),
            )
            for k in ("causal_rn", "transformer")
        ]
    else:
        runs = [scaling_run(k, L, "paper") for k in ("causal_rn", "transformer")]
    name = f"gpu-plan-l{L}"
    EXPERIMENTS[name] = Experiment(
        name,
        f"Fig. 4 at the paper preset, L = {L}",
        "19_copy_scaling.ipynb",
        (lambda preset, seeds, root: runs,),
        presets=("paper",),
    )
    sets = {"device": device} if device == "cpu" else {}
    stopped = None
    try:
        for r in runs:  # one after the other: each has the GPU to itself
            extra = {"impl": impl} if r.kind == "causal_rn" and not tiny else {}
            run_sweep(
                name, "paper", match=run_path(root, r).name, root=root, jobs=1, sets={**sets, **extra}, progress=False
            )
    except RunInterrupted as e:
        stopped = str(e)
    out = []
    for r in runs:
        path = run_path(root, r)
        row = dict(run=str(path), kind=r.kind, impl=impl if r.kind == "causal_rn" else None)
        m = read_metrics(path / "metrics.csv") if (path / "metrics.csv").exists() else {}
        if m.get("iteration"):
            row.update(iterations=int(m["iteration"][-1]), seconds_per_iteration=m["seconds"][-1] / m["iteration"][-1])
        if (path / "summary.json").exists():
            s = json.loads((path / "summary.json").read_text())
            keep = ("iterations_to_99", "relation_impl", "autoregressive_accuracy", "device")
            row.update(status="finished", **{k: s.get(k) for k in keep})
        elif m.get("iteration"):
            row.update(status="partial (stopped at its time box; the plan run again resumes it)")
        else:
            row.update(status="not started")
        out.append(row)
    return dict(L=L, preset="paper" + (" (tiny)" if tiny else ""), runs=out, stopped=stopped)


# --- the plan -----------------------------------------------------------------------------------------------------
def run_stage(args) -> int:
    out = Path(args.out)
    triton_ok = False
    if (out / "check.json").exists():
        triton_ok = json.loads((out / "check.json").read_text()).get("triton_ok", False)
    t0 = time.perf_counter()
    if args.stage == "check":
        result = check(args.device, args.tiny)
    elif args.stage == "bench":
        result = bench(args.device, args.tiny, triton_ok)
    else:
        root = out / "root" if args.tiny else Path(args.root)
        result = fig4(int(args.stage.split("L")[1]), args.device, args.tiny, triton_ok, root)
    write(
        out,
        args.stage,
        dict(stage=args.stage, seconds=round(time.perf_counter() - t0, 1), **versions(args.device), **result),
    )
    return 0


def run_plan(args) -> int:
    out = Path(args.out)
    plan, start = [], time.monotonic()
    for stage in STAGES:
        left = args.budget - (time.monotonic() - start)
        box = left if stage == STAGES[-1] else min(left, SHARE[stage] * args.budget)
        if box < 10:
            plan.append(dict(stage=stage, status="not run: no time left in the budget"))
            continue
        cmd = [
            sys.executable,
            __file__,
            "--stage",
            stage,
            "--device",
            args.device,
            "--out",
            str(out),
            "--root",
            args.root,
        ]
        cmd += ["--tiny"] if args.tiny else []
        t0 = time.monotonic()
        p = subprocess.Popen(cmd)
        try:
            code = p.wait(timeout=box)
            status = "done" if code == 0 else f"failed (exit status {code})"
        except subprocess.TimeoutExpired:
            p.send_signal(signal.SIGTERM)  # a run writes its checkpoint; the stage writes what it has
            try:
                p.wait(timeout=30)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            status = f"stopped at its time box ({box:.0f} s)"
        plan.append(dict(stage=stage, status=status, seconds=round(time.monotonic() - t0, 1), box_s=round(box)))
        print(f"gpu plan: {stage}: {plan[-1]['status']} in {plan[-1]['seconds']} s", flush=True)
        write(out, "plan", dict(budget_s=args.budget, tiny=args.tiny, device=args.device, stages=plan))
    return 0 if all(s["status"] == "done" for s in plan) else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--device", default="cuda", choices=("cuda", "cpu"))
    ap.add_argument("--tiny", action="store_true", help="tiny sizes: the whole plan in seconds, on a CPU too")
    ap.add_argument("--budget", type=float, default=600.0, help="seconds for all stages together (default 600)")
    ap.add_argument("--out", help="where the stages' JSON goes (default results/gpu/<device>)")
    ap.add_argument("--root", default="results", help="the results root of the Fig. 4 runs (default results)")
    ap.add_argument("--stage", choices=STAGES, help=argparse.SUPPRESS)  # one stage, as the plan runs it
    args = ap.parse_args(argv)
    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():
            ap.exit(2, "gpu_plan: no CUDA GPU is visible; on a CPU use --device cpu --tiny\n")
    if args.out is None:
        args.out = str(Path("results/gpu") / ("cpu-tiny" if args.device == "cpu" else "cuda"))
    return run_stage(args) if args.stage else run_plan(args)


if __name__ == "__main__":
    sys.exit(main())
