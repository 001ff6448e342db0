"""`python -m bench.model [--examples N] [--steps N] [--seed S]`: the model-based test of the read path
(tests/test_model.py) at length. CI runs 25 derandomized examples of 14 steps; this explores new sequences
(a fresh seed unless one is given) for as many examples as asked, and prints what it ran and how long it took.
A failure prints Hypothesis' shrunk sequence of steps, which reproduces it with the printed seed."""

from __future__ import annotations

import argparse
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m bench.model", description=__doc__)
    parser.add_argument("--examples", type=int, default=300, help="sequences to run (default 300)")
    parser.add_argument("--steps", type=int, default=25, help="steps per sequence at most (default 25)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default: a fresh one)")
    args = parser.parse_args(argv)
    seed = secrets.randbelow(2**32) if args.seed is None else args.seed
    env = {
        **os.environ,
        "HARDAL_MODEL_EXAMPLES": str(args.examples),
        "HARDAL_MODEL_STEPS": str(args.steps),
        "HARDAL_MODEL_SEED": str(seed),
    }
    command = [sys.executable, "-m", "pytest", "tests/test_model.py", "-q", "-n", "0", "-p", "no:cacheprovider"]
    command.append(f"--hypothesis-seed={seed}")
    print(f"model-based test: {args.examples} sequences of up to {args.steps} steps, seed {seed}", flush=True)
    started = time.perf_counter()
    code = subprocess.call(command, cwd=ROOT, env=env)
    print(f"{'passed' if code == 0 else 'FAILED'} in {time.perf_counter() - started:.0f} s (seed {seed})")
    return code


if __name__ == "__main__":
    raise SystemExit(main())
