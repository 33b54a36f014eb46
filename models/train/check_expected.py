#!/usr/bin/env python3
"""Checks that Horizon's CLI reproduces the golden log-probs of the default model (models/horizon-kjv/expected.json).

    python3 models/train/check_expected.py [--model models/horizon-kjv] [--tolerance 1e-3]

Writes the golden token ids to a temporary file, runs
`dotnet run --project src/Cli -c Release -- score --model MODEL --tokens-file FILE`, and compares its "logprobs"
(logprobs[i] = log p(tokens[i+1] | tokens[..i])) with expected.json's. Exit code 0 when the largest absolute
difference is within the tolerance. Plain Python 3 standard library; run from the repository root.
"""
from __future__ import annotations

import argparse
import json
import math
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> int:
    root = Path(__file__).resolve().parents[2]
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=str(root / "models" / "horizon-kjv"))
    parser.add_argument("--tolerance", type=float, default=None, help="default: expected.json's 'tolerance' (1e-3)")
    parser.add_argument("--no-build", action="store_true", help="pass --no-build to dotnet run")
    args = parser.parse_args()

    expected = json.loads((Path(args.model) / "expected.json").read_text(encoding="utf-8"))
    tolerance = args.tolerance if args.tolerance is not None else float(expected.get("tolerance", 1e-3))
    with tempfile.NamedTemporaryFile("w", suffix=".txt", delete=False) as f:
        f.write(" ".join(str(t) for t in expected["tokens"]) + "\n")
        tokens_file = f.name
    command = ["dotnet", "run", "--project", str(root / "src" / "Cli"), "-c", "Release"]
    if args.no_build:
        command.append("--no-build")
    command += ["--", "score", "--model", args.model, "--tokens-file", tokens_file]
    run = subprocess.run(command, capture_output=True, text=True)
    Path(tokens_file).unlink(missing_ok=True)
    if run.returncode != 0:
        print(run.stdout[-2000:] + run.stderr[-2000:], file=sys.stderr)
        print(f"error: horizon score exited with {run.returncode}", file=sys.stderr)
        return 1
    got = json.loads(run.stdout.strip().splitlines()[-1])
    if got["tokens"] != expected["tokens"]:
        print("error: the CLI scored other tokens than expected.json's", file=sys.stderr)
        return 1
    want = expected["logprobs"]
    if len(got["logprobs"]) != len(want):
        print(f"error: {len(got['logprobs'])} log-probs from the CLI, {len(want)} expected", file=sys.stderr)
        return 1
    deltas = [abs(a - b) for a, b in zip(got["logprobs"], want)]
    worst = max(range(len(deltas)), key=deltas.__getitem__)
    ppl_want = math.exp(-sum(want) / len(want))
    print(f"{len(want)} log-probs: max |Δ| = {deltas[worst]:.3e} (position {worst}), mean |Δ| = {sum(deltas) / len(deltas):.3e}; "
          f"perplexity {got['perplexity']:.4f} (expected {ppl_want:.4f}); tolerance {tolerance:g}")
    return 0 if deltas[worst] <= tolerance else 1


if __name__ == "__main__":
    sys.exit(main())
