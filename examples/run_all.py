"""Run the example training scripts with a few settings (what `make demo` runs)."""

from __future__ import annotations

import argparse
import subprocess
import sys
from pathlib import Path

HERE = Path(__file__).parent
SETTINGS = [
    ("baseline", ["--lr", "0.5", "--hidden", "32"]),
    ("small-lr", ["--lr", "0.05", "--hidden", "32"]),
    ("wide", ["--lr", "0.5", "--hidden", "128"]),
    ("tiny", ["--lr", "1.0", "--hidden", "8", "--seed", "1"]),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--root", default="labtrack")
    parser.add_argument("--epochs", default="200")
    args = parser.parse_args()
    for name, extra in SETTINGS:
        cmd = [sys.executable, str(HERE / "train_mlp.py"), "--name", name, "--root", args.root,
               "--epochs", args.epochs, *extra]
        print("$", " ".join(cmd[1:]), flush=True)
        subprocess.run(cmd, check=True)
    # a script written for wandb, only its import changed: images, sound, video, tables
    cmd = [sys.executable, str(HERE / "wandb_style.py"), "--root", args.root]
    print("$", " ".join(cmd[1:]), flush=True)
    subprocess.run(cmd, check=True)
    print(f"\nThe runs are in {Path(args.root).resolve()}:")
    for d in sorted(Path(args.root).glob("*/*/run.json")):
        print("  ", d.parent)


if __name__ == "__main__":
    main()
