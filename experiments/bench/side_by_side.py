r"""The authors' PyTorch TAC and tac_jax, timed one after the other on this machine.

Runs `reference_cpu.py` with a Python that has PyTorch (a subprocess: tac_jax never
imports torch), then `tac-jax bench --preset paper --models mnist_cnn` for each
convolution asked for, and prints one JSON line per measurement, then one per tac_jax
program with ``ratio_to_reference`` (tac_jax images/s over the authors'). ``--rounds``
repeats the whole pair; the last lines are the median ratio over rounds.

    .venv/bin/python experiments/bench/side_by_side.py --ref-dir .ref \
        --ref-python /usr/bin/python3 --conv lax,patches --rounds 2

Exit code 2 when the reference cannot run (no ``--ref-dir``, no PyTorch): the ratios
are this script's purpose, so it never prints tac_jax's numbers alone as if compared.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys

WHATS = ("addon", "scratch", "forward", "score")
HERE = os.path.dirname(os.path.abspath(__file__))


def reference(args: argparse.Namespace) -> dict[str, float]:
    """``what -> images/s`` of the authors' code, its lines echoed as they come."""
    cmd = [
        args.ref_python, os.path.join(HERE, "reference_cpu.py"), "--ref-dir", args.ref_dir,
        "--train-batch", str(args.train_batch), "--score-batch", str(args.score_batch),
        "--repeats", str(args.repeats), "--warmup", str(args.warmup),
        "--threads", str(args.threads),
    ]  # fmt: skip
    proc = subprocess.run(cmd, capture_output=True, text=True, check=False)
    if proc.returncode:
        tail = (proc.stderr.strip().splitlines() or ["(no output)"])[-1]
        print(f"side_by_side: the reference failed ({args.ref_python}): {tail}", file=sys.stderr)
        raise SystemExit(2)
    out = {}
    for line in proc.stdout.splitlines():
        record = json.loads(line)
        print(json.dumps(record), flush=True)
        out[record["what"]] = record["images_per_s"]
    return out


def ours(conv: str, args: argparse.Namespace) -> dict[str, dict]:
    from tac_jax.bench import make_cases, run_bench
    from tac_jax.models.patch_conv import using_conv_impl

    cases = make_cases(
        "paper", models=["mnist_cnn"], what=list(WHATS), dtypes=["float32"],
        train_batch=args.train_batch, score_batch=args.score_batch,
    )  # fmt: skip
    with using_conv_impl(conv):
        records = run_bench(cases, repeats=args.repeats, warmup=args.warmup)
    for record in records:
        print(json.dumps({"program": "tac_jax", **record}), flush=True)
    return {r["what"]: r for r in records}


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ref-dir", required=True, help="folder with the authors' src/")
    parser.add_argument("--ref-python", default="/usr/bin/python3", help="a Python with torch")
    parser.add_argument("--conv", default="lax,patches", help="tac_jax convolutions to time")
    parser.add_argument("--train-batch", type=int, default=128)
    parser.add_argument("--score-batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--warmup", type=int, default=2)
    parser.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads")
    parser.add_argument("--rounds", type=int, default=1, help="reference + tac_jax pairs")
    args = parser.parse_args()
    convs = [c for c in args.conv.split(",") if c]
    if not convs or any(c not in ("auto", "patches", "lax") for c in convs):
        parser.error(f"expected --conv from auto,patches,lax, got {args.conv!r}")
    if args.rounds < 1:
        parser.error(f"expected --rounds >= 1, got {args.rounds}")
    ratios: dict[tuple[str, str], list[float]] = {}
    for r in range(args.rounds):
        ref = reference(args)
        for conv in convs:
            for what, record in ours(conv, args).items():
                ratio = record["images_per_s"] / ref[what]
                ratios.setdefault((conv, what), []).append(ratio)
                line = {
                    "round": r, "what": what, "conv": record["conv"], "batch": record["batch"],
                    "tac_jax_images_per_s": record["images_per_s"],
                    "reference_images_per_s": round(ref[what], 1),
                    "ratio_to_reference": round(ratio, 3),
                }  # fmt: skip
                print(json.dumps(line), flush=True)
    for (conv, what), values in ratios.items():
        summary = {
            "summary": "median over rounds", "what": what, "conv": conv,
            "ratio_to_reference": round(statistics.median(values), 3),
            "ratios": [round(v, 3) for v in values],
        }  # fmt: skip
        print(json.dumps(summary), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
