"""Time per training step, peak memory and achieved GFLOP/s of single runs on this CPU.

For the paper's smallest (2/400/2/128), a median (3/800/3/256) and the largest (5/3200/5/1024)
configurations (nLayerG/sizeG/nLayerD/sizeD), GAN and EBGAN, against a plain float32 matmul
measured in the same run with the same thread count. Each configuration runs in a fresh
subprocess so its peak resident memory (ru_maxrss) is its own; the baseline RSS of a process
that imported torch and built nothing is subtracted and printed too.

    python benchmarks/step_time.py [--threads 2] [--steps 30] [--repeats 5]

Prints one line per configuration and a final line ``median_fraction_of_matmul=<ratio>`` for
the median configuration (GAN and EBGAN averaged).
"""

from __future__ import annotations

import argparse
import json
import resource
import statistics
import subprocess
import sys
import time

CONFIGS = {
    "smallest": dict(n_layers_g=2, size_g=400, n_layers_d=2, size_d=128),
    "median": dict(n_layers_g=3, size_g=800, n_layers_d=3, size_d=256),
    "largest": dict(n_layers_g=5, size_g=3200, n_layers_d=5, size_d=1024),
}


def measure_one(name: str, model: str, threads: int, steps: int, repeats: int) -> dict:
    import torch

    from gridstudy.config import RunConfig
    from gridstudy.data import load_dataset
    from gridstudy.models import build_models, count_flops_per_step
    from gridstudy.train import make_optimizer, train_step

    torch.set_num_threads(threads)
    baseline_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    c = RunConfig(model=model, **CONFIGS[name])
    data = load_dataset("mnist5k").train_x
    torch.manual_seed(0)
    g, d = build_models(c)
    opt_d, opt_g = make_optimizer(c.optim_d, d.parameters(), c), make_optimizer(
        c.optim_g, g.parameters(), c)
    rng = torch.Generator().manual_seed(0)

    def run(n: int) -> float:
        start = time.perf_counter()
        for _ in range(n):
            real = data[torch.randint(0, len(data), (c.batch_size,), generator=rng)]
            z = torch.randn(c.batch_size, c.z_dim, generator=rng)
            ld, lg = train_step(c, g, d, opt_d, opt_g, real, z, c.margin)
            ld.item()
        return (time.perf_counter() - start) / n

    run(5)  # warm-up
    times = [run(steps) for _ in range(repeats)]
    step = statistics.median(times)
    peak_kb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    flops = count_flops_per_step(c)
    return {"config": name, "model": model, "step_ms": step * 1e3, "gflops": flops / step / 1e9,
            "peak_rss_mb": peak_kb / 1024, "rss_above_baseline_mb": (peak_kb - baseline_kb) / 1024,
            "params": sum(p.numel() for p in [*g.parameters(), *d.parameters()])}


def matmul_gflops(threads: int, n: int = 1024, repeats: int = 20) -> float:
    import torch

    torch.set_num_threads(threads)
    a, b = torch.randn(n, n), torch.randn(n, n)
    for _ in range(3):
        a @ b
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        times.append(time.perf_counter() - start)
    return 2 * n**3 / statistics.median(times) / 1e9


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--steps", type=int, default=30)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--one", nargs=2, metavar=("CONFIG", "MODEL"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(measure_one(*args.one, args.threads, args.steps, args.repeats)))
        return
    peak = matmul_gflops(args.threads)
    print(f"matmul 1024x1024 float32, {args.threads} threads: {peak:.1f} GFLOP/s")
    fractions = []
    for name in CONFIGS:
        for model in ("gan", "ebgan"):
            steps = max(5, args.steps // 10) if name == "largest" else args.steps
            out = subprocess.run([sys.executable, __file__, "--one", name, model, "--threads",
                                  str(args.threads), "--steps", str(steps), "--repeats",
                                  str(args.repeats)], capture_output=True, text=True, check=True)
            r = json.loads(out.stdout.strip().splitlines()[-1])
            fraction = r["gflops"] / peak
            if name == "median":
                fractions.append(fraction)
            print(f"{name:8s} {model:5s} step {r['step_ms']:8.2f} ms  {r['gflops']:6.1f} GFLOP/s "
                  f"({fraction:5.1%} of matmul)  peak RSS {r['peak_rss_mb']:6.0f} MB "
                  f"(+{r['rss_above_baseline_mb']:.0f} MB over the bare process)  "
                  f"{r['params'] / 1e6:.2f} M params", flush=True)
    print(f"matmul_gflops={peak:.1f}")
    print(f"median_fraction_of_matmul={statistics.mean(fractions):.3f}")


if __name__ == "__main__":
    main()
