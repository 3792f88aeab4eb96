"""Check the GPU series for real: a short CUDA job logged with labtrack, then the series it got.

    .venv/bin/python benchmarks/gpu_check.py [--seconds 20] [--interval 1]

Run it on a machine with an NVIDIA GPU (nvidia-ml-py installed) or an AMD GPU (amdsmi).
It trains a small model on random data for `--seconds` with the sampler every `--interval`
seconds, then prints every `system/gpu/...` series it recorded (points, min, mean, max) and
exits 1 if a GPU was used but no GPU series was recorded. On a machine without CUDA it says
so and exits 0.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time

import labtrack
from labtrack._store import scalars


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=20.0)
    ap.add_argument("--interval", type=float, default=1.0)
    args = ap.parse_args()
    try:
        import torch
    except ImportError:
        print("gpu_check: torch is not installed; nothing to check")
        return 0
    if not torch.cuda.is_available():
        print("gpu_check: no CUDA device here (torch.cuda.is_available() is False); nothing to check")
        return 0

    root = tempfile.mkdtemp(prefix="labtrack-gpu-check-")
    run = labtrack.Run("gpu-check", root=root, capture_git=False, system=True,
                       _environ={"LABTRACK_SYSTEM_SECONDS": str(args.interval)})
    dev = torch.device("cuda")
    model = torch.nn.Sequential(torch.nn.Linear(4096, 4096), torch.nn.ReLU(), torch.nn.Linear(4096, 10)).to(dev)
    opt = torch.optim.SGD(model.parameters(), lr=0.01)
    x = torch.randn(1024, 4096, device=dev)
    y = torch.randint(0, 10, (1024,), device=dev)
    end = time.time() + args.seconds
    step = 0
    while time.time() < end:
        loss = torch.nn.functional.cross_entropy(model(x), y)
        opt.zero_grad()
        loss.backward()
        opt.step()
        if step % 50 == 0:
            run.log({"train/loss": loss.item()}, step=step)
        step += 1
    torch.cuda.synchronize()
    run.finish()

    names = sorted(str(p.relative_to(run.dir / "scalars").with_suffix("")).replace("\\", "/")
                   for p in (run.dir / "scalars" / "system").rglob("*.csv"))
    gpu = [n for n in names if n.startswith("system/gpu/")]
    print(f"gpu_check: {step} steps on {torch.cuda.get_device_name(0)}; run {run.dir}")
    print(f"{'series':40s} {'points':>6s} {'min':>14s} {'mean':>14s} {'max':>14s}")
    for n in names:
        _, values, _ = scalars.read_columns(run.dir / "scalars" / f"{n}.csv")
        if values:
            print(f"{n:40s} {len(values):6d} {min(values):14.6g} {statistics.fmean(values):14.6g} {max(values):14.6g}")
    if not gpu:
        print("gpu_check: FAILED: a CUDA job ran but no system/gpu/... series was recorded "
              "(is nvidia-ml-py installed? see the info line above)", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
