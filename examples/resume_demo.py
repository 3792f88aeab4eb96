"""Checkpoints and `labtrack rerun --continue`: a run that crashes, then carries on.

    python examples/resume_demo.py --crash-at 30     # saves a checkpoint every 10 epochs, dies at 30
    labtrack rerun <run id> --continue               # same run, from its last checkpoint

The script is written the way a resumable training script is: it asks its run for the last
checkpoint and starts from scratch only when there is none. `labtrack rerun --continue` tells
`labtrack.init()` to reopen the crashed run and `load_checkpoint("last")`
returns the state of epoch 29 and puts the random generators back where they were. The
series ends up exactly as if the run had never crashed. (`--crash-at` is recorded in the
command line too; the re-run ignores it once it resumes from a checkpoint, as a real script
would not crash again.) Without a git repository the run is still resumable with
`python examples/resume_demo.py --resume <id>` (passed to `labtrack.init(resume=...)`).
"""

from __future__ import annotations

import argparse

import numpy as np

import labtrack
from labtrack.errors import RunStateError


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--epochs", type=int, default=50)
    parser.add_argument("--crash-at", type=int, default=-1, help="raise an error at this epoch")
    parser.add_argument("--root", default=None)
    parser.add_argument("--resume", default=None, help="a run id to reopen (labtrack rerun --continue does it for you)")
    args = parser.parse_args()

    run = labtrack.init(experiment="resume-demo", config=args, seed=0, root=args.root, resume=args.resume)
    try:
        state = run.load_checkpoint("last")  # also restores the RNG states
        print(f"resuming run {run.id} after epoch {state['epoch']}")
        resuming = True
    except RunStateError:  # a new run: nothing saved yet
        state = {"epoch": -1, "w": np.zeros(3)}
        resuming = False

    target = np.array([1.0, -2.0, 0.5])
    w = state["w"]
    for epoch in range(state["epoch"] + 1, args.epochs):
        if epoch == args.crash_at and not resuming:
            raise RuntimeError(f"simulated crash at epoch {epoch}")
        x = np.random.normal(size=(32, 3))
        y = x @ target + np.random.normal(scale=0.1, size=32)
        grad = 2 * x.T @ (x @ w - y) / len(y)
        w = w - 0.05 * grad
        loss = float(np.mean((x @ w - y) ** 2))
        run.log({"train/loss": loss}, step=epoch)
        if epoch % 10 == 9:
            run.save_checkpoint({"epoch": epoch, "w": w}, step=epoch, metric=loss, mode="min", keep_last=2)
    run.finish()
    print(f"run {run.id} finished; checkpoints in {run.dir / 'checkpoints'}")


if __name__ == "__main__":
    main()
