"""The ``tac-jax`` command: one subcommand per task, each a thin call into the library.

    tac-jax train --config smoke --workdir runs/smoke \\
        [--config.steps=50 ...] [--coordinator-address HOST:PORT --num-processes N --process-id I]

``--config`` is a config's name in `tac_jax.configs` (``smoke``, ``demo:base``) or a
Python file with ``get_config()`` (``path/to/config.py[:ARG]``).

Errors the library raises for bad input (``ValueError``, ``FileNotFoundError``) and
files the system refuses (an ``OSError`` naming its file: a read-only folder, a folder
where a file should be) are printed as one line on stderr with exit code 2, without a
traceback; any other error is a bug and keeps its traceback (exit code 1). ``train`` and
``demo`` stopped by SIGTERM exit with 75 (``EX_TEMPFAIL``): run the same command again
to resume.
"""

from __future__ import annotations

import argparse
import contextlib
import sys
from collections.abc import Callable, Sequence

from tac_jax.config_io import apply_overrides, config_names, load_config, split_override_args

EXIT_USAGE = 2
EXIT_PREEMPTED = 75  # EX_TEMPFAIL: stopped by SIGTERM with a checkpoint; run it again

_TRAIN_EXIT_CODES = """exit codes:
  0   finished: trained (or resumed) to config.steps and evaluated
  1   unexpected error (a traceback)
  2   refused, one line on stderr: bad arguments, files or config; the workdir is
      locked by another training; the workdir holds a run of another config (see
      --fresh); an add-on's base run is unfinished
  75  preempted (SIGTERM): the step reached is checkpointed, no final metrics are
      written; run the same command again to resume"""


def _add_distributed_args(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("multi-process (omit on one machine or under SLURM/TPU)")
    group.add_argument("--coordinator-address", help="HOST:PORT of process 0")
    group.add_argument("--num-processes", type=int, help="total number of processes")
    group.add_argument("--process-id", type=int, help="this process's index")


def _add_config_args(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--config",
        required=True,
        help="a config's name, NAME or NAME:ARG (" + ", ".join(config_names()) + "), or a "
        "Python file with get_config(), FILE or FILE:ARG; override fields with "
        "--config.KEY=VALUE",
    )
    parser.add_argument("--workdir", required=True, help="run directory (checkpoints, metrics)")


def _config(args: argparse.Namespace, extra: Sequence[str]):
    return apply_overrides(load_config(args.config), split_override_args(extra))


def _start_distributed(args: argparse.Namespace) -> None:
    from tac_jax.parallel import initialize_distributed

    initialize_distributed(args.coordinator_address, args.num_processes, args.process_id)


def cmd_train(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Trains (or resumes) a run and prints its final metrics."""
    config = _config(args, extra)
    # Before anything touches a device: jax.distributed must start first.
    _start_distributed(args)
    from tac_jax.train.loop import train_and_evaluate

    results = train_and_evaluate(config, args.workdir, fresh=args.fresh)
    print(
        " ".join(f"{k}={v:.4f}" if isinstance(v, float) else f"{k}={v}" for k, v in results.items())
    )
    if results.get("preempted"):
        print(
            f"tac-jax train: preempted at step {results['step']} of {results['steps']} "
            "(checkpoint saved): run the same command again to resume",
            file=sys.stderr,
        )
        return EXIT_PREEMPTED
    return 0


def add_train_parser(sub: argparse._SubParsersAction) -> None:
    help_text = "train a model (base, TAC add-on or TAC from scratch) and evaluate it"
    parser = sub.add_parser(
        "train",
        help=help_text,
        description=help_text,
        epilog=_TRAIN_EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    _add_config_args(parser)
    parser.add_argument(
        "--fresh",
        action="store_true",
        help="move the workdir's earlier run (checkpoints, metrics, config, report) into "
        "WORKDIR/previous-<UTC time>/ and start again; needed when the config changed",
    )
    _add_distributed_args(parser)
    # Unknown arguments of this subcommand are --config.KEY=VALUE overrides.
    parser.set_defaults(run=cmd_train, overrides=True)


def cmd_demo(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Base CNN, TAC add-on and the full evaluation on Fashion-MNIST."""
    from tac_jax.demo import run_demo

    metrics = run_demo(
        args.workdir, base_steps=args.base_steps, tac_steps=args.tac_steps,
        num_ood=args.num_ood, bootstrap=args.bootstrap, command=" ".join(["tac-jax", *sys.argv[1:]]),
    )  # fmt: skip
    # With the evaluation on, None means a training stopped by SIGTERM: nothing is
    # evaluated, and the same command resumes.
    return 0 if metrics is not None else EXIT_PREEMPTED


def add_demo_parser(sub: argparse._SubParsersAction) -> None:
    help_text = "the main job: train a CNN on Fashion-MNIST, add TAC, evaluate every score"
    parser = sub.add_parser(
        "demo",
        help=help_text,
        description=help_text,
        epilog="exit codes: 0 done, 1 unexpected error, 2 refused (one line), 75 a training "
        "was preempted (SIGTERM) before the evaluation: run the same command again",
    )
    parser.add_argument("--workdir", default="runs/demo", help="run directory (default runs/demo)")
    parser.add_argument("--base-steps", type=int, help="base training steps (config default)")
    parser.add_argument("--tac-steps", type=int, help="TAC training steps (config default)")
    parser.add_argument("--num-ood", type=int, default=2000, help="images per OOD set")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    parser.set_defaults(run=cmd_demo)


def cmd_evaluate(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Every score, metric and plot for a trained run, into WORKDIR/report/."""
    from tac_jax.evaluate import evaluate_run
    from tac_jax.evaluate.ood.user_sets import parse_ood_spec

    # evaluate_run checks the files and names before it loads the run.
    extra_ood = [parse_ood_spec(spec) for spec in args.ood or ()]
    evaluate_run(
        args.workdir, suite=args.suite, extra_ood=extra_ood, num_ood=args.num_ood,
        bootstrap=args.bootstrap, seed=args.seed, severities=args.severities,
        epsilons=args.epsilons, attacks=args.attacks, attack_size=args.attack_size,
        scores=args.scores, log=print, batch_size=args.batch_size,
        deepest=args.deepest, command=" ".join(["tac-jax", *sys.argv[1:]]),
    )  # fmt: skip
    print(f"report: {args.workdir}/report/report.md")
    return 0


def add_evaluate_parser(sub: argparse._SubParsersAction) -> None:
    help_text = "score a trained run with TAC and every baseline; write report/ with plots"
    parser = sub.add_parser("evaluate", help=help_text, description=help_text)
    parser.add_argument("--workdir", required=True, help="a trained run's directory")
    _add_ood_args(parser)
    parser.add_argument("--num-ood", type=int, default=2000, help="images per OOD set")
    parser.add_argument("--bootstrap", type=int, default=200, help="bootstrap resamples")
    parser.add_argument("--seed", type=int, default=0, help="subsampling and bootstrap seed")
    parser.add_argument(
        "--severities", type=_ints, default=(1, 3, 5), help="corruption severities (default 1,3,5)"
    )
    parser.add_argument(
        "--epsilons", type=_floats, default=(0.1, 0.3),
        help="L∞ radii of the PGD attacks, images in [0, 1] (default 0.1,0.3; '' for none)",
    )  # fmt: skip
    parser.add_argument(
        "--attacks", type=_names, default=("pgd", "fgsm"),
        help="from pgd,fgsm, each at every ε (default both)",
    )  # fmt: skip
    parser.add_argument("--attack-size", type=int, default=1000, help="test inputs attacked")
    parser.add_argument("--scores", type=_names, help="comma-separated scores (default: all)")
    parser.add_argument(
        "--batch-size", type=int, default=256,
        help="examples per forward pass (default 256; at most the largest dataset)",
    )  # fmt: skip
    _add_deepest_arg(parser)
    parser.set_defaults(run=cmd_evaluate)


def _add_ood_args(parser: argparse.ArgumentParser) -> None:
    from tac_jax.evaluate.ood.build import SUITES
    from tac_jax.evaluate.ood.suites import KINDS, TFDS_SUITES
    from tac_jax.evaluate.ood.user_sets import OOD_SPEC

    tfds = "; ".join(f"{k}: {', '.join(e.name for e in v)}" for k, v in TFDS_SUITES.items())
    parser.add_argument(
        "--suite", default="fmnist", choices=SUITES, metavar="SUITE",
        help=f"OOD suite, one of {', '.join(SUITES)} (default fmnist: local far, synthetic "
        f"and corrupted sets; text for text runs; none: only --ood sets); the TFDS suites "
        f"({tfds}) need a run trained on that dataset and TFDS data or a network",
    )  # fmt: skip
    parser.add_argument(
        "--ood", action="append", metavar=OOD_SPEC,
        help=f"add an OOD set of your own (repeatable): an array file (.npy, .npz or IDX; "
        f"uint8 or float in [0, 1], shaped like the run's inputs), KIND in {', '.join(KINDS)} "
        f"(default far); a corruption .npz keeps its labels",
    )  # fmt: skip


def _add_deepest_arg(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--deepest", type=int,
        help="TAC's predictions and scores on the deepest K tapped layers, 0 all "
        "(default: the run's config.tac.score_deepest)",
    )  # fmt: skip


def cmd_compare(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """One table of several evaluated runs (e.g. TAC beside ensembles and SNGP)."""
    from tac_jax.evaluate.reporting.compare import compare_runs

    compare_runs(args.workdirs, args.out, labels=args.labels)
    print(f"report: {args.out}/compare.md")
    return 0


def add_compare_parser(sub: argparse._SubParsersAction) -> None:
    help_text = "compare evaluated runs (TAC, ensembles, SNGP, ...) in one table"
    parser = sub.add_parser("compare", help=help_text, description=help_text)
    parser.add_argument("workdirs", nargs="+", help="evaluated runs")
    parser.add_argument("--out", required=True, help="where to write compare.md and .json")
    parser.add_argument("--labels", type=_names, help="comma-separated names, one per run")
    parser.set_defaults(run=cmd_compare)


def cmd_score(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Per-example scores of an array file, written as an .npz; with ``--risk``, also
    which inputs to accept at that guaranteed selective risk."""
    if args.risk is None:
        given = [f for f, v in (("--delta", args.delta), ("--guarantee", args.guarantee),
                                ("--accept-score", args.accept_score)) if v is not None]  # fmt: skip
        if given:
            raise ValueError(f"expected --risk with {', '.join(given)}, got no --risk")
    from tac_jax.evaluate import score_file

    out = score_file(
        args.workdir, args.input, args.output, batch_size=args.batch_size,
        scores=args.scores, deepest=args.deepest, risk=args.risk,
        delta=DEFAULT_DELTA if args.delta is None else args.delta,
        method=args.guarantee or "sgr", accept_score=args.accept_score,
    )  # fmt: skip
    if args.risk is not None:
        print(
            f"accepted {int(out['accept'].sum())} of {out['accept'].size} inputs by "
            f"{out['accept_score']} >= {float(out['accept_threshold']):g} "
            f"({out['accept_method']}, r*={float(out['accept_risk']):g}, "
            f"delta={float(out['accept_delta']):g}; validation coverage "
            f"{float(out['accept_coverage']):.3f})"
        )
    print(f"wrote {args.output}: {', '.join(sorted(out))}")
    return 0


# --delta's default: the guarantee holds with probability 0.9.
DEFAULT_DELTA = 0.1


def add_score_parser(sub: argparse._SubParsersAction) -> None:
    help_text = "score an array file (.npy, .npz or IDX) with a trained run: one array per score"
    parser = sub.add_parser("score", help=help_text, description=help_text)
    parser.add_argument("--workdir", required=True, help="a trained run's directory")
    parser.add_argument("--input", required=True, help="images: uint8 N×H×W[×C] or float in [0, 1]")
    parser.add_argument("--output", required=True, help="where to write the .npz")
    parser.add_argument("--batch-size", type=int, default=256, help="images per forward pass")
    parser.add_argument(
        "--scores", type=_names, help="comma-separated score names (default: every one)"
    )
    _add_deepest_arg(parser)
    group = parser.add_argument_group(
        "accept/reject at a guaranteed risk (needs a run with a validation split)",
        "a threshold on one score, calibrated on the run's validation split, such that the "
        "base head's error rate among the accepted inputs is at most R with probability "
        "1 - D; the .npz also holds accept (score >= accept_threshold; +inf rejects all), "
        "accept_score, accept_threshold, accept_risk, accept_delta, accept_method, "
        "accept_coverage, accept_calibration_risk, accept_calibration_size",
    )
    group.add_argument("--risk", type=float, metavar="R", help="target selective risk in (0, 1)")
    group.add_argument(
        "--delta", type=float, metavar="D", help=f"in (0, 1) (default {DEFAULT_DELTA})"
    )
    group.add_argument(
        "--guarantee", choices=("sgr", "ltt"),
        help="sgr: Geifman & El-Yaniv's binary search with a binomial bound (default); "
        "ltt: Learn then Test, fixed-sequence Hoeffding-Bentkus tests",
    )  # fmt: skip
    group.add_argument(
        "--accept-score", metavar="NAME",
        help="the score thresholded (default: the first of --scores, else msp)",
    )  # fmt: skip
    parser.set_defaults(run=cmd_score)


def _names(text: str) -> list[str]:
    return [name.strip() for name in text.split(",") if name.strip()]


def _ints(text: str) -> tuple[int, ...]:
    return tuple(int(v) for v in _names(text))


def _floats(text: str) -> tuple[float, ...]:
    return tuple(float(v) for v in _names(text))


def cmd_bench(args: argparse.Namespace, extra: Sequence[str]) -> int:
    """Times train steps and TAC scoring; prints one JSON line per case."""
    from tac_jax.bench import PRESETS, make_cases, run_bench
    from tac_jax.models.patch_conv import conv_impl, using_conv_impl

    cases = make_cases(
        args.preset, models=args.models, what=args.what, dtypes=args.dtype,
        train_batch=args.train_batch, score_batch=args.score_batch,
    )  # fmt: skip
    preset = PRESETS[args.preset]
    repeats = preset.repeats if args.repeats is None else args.repeats
    warmup = preset.warmup if args.warmup is None else args.warmup
    with (
        open(args.output, "a") if args.output else contextlib.nullcontext() as out,
        using_conv_impl(args.conv or conv_impl()),
    ):

        def log(line: str) -> None:
            print(line, flush=True)
            if out is not None:
                out.write(line + "\n")
                out.flush()

        run_bench(cases, repeats=repeats, warmup=warmup, log=log, peak=args.peak_tflops)
    return 0


def add_bench_parser(sub: argparse._SubParsersAction) -> None:
    help_text = "time train steps, TAC scoring and the bare forward on synthetic inputs"
    parser = sub.add_parser("bench", help=help_text, description=help_text)
    parser.add_argument("--preset", default="paper", help="paper (default) or smoke (tiny, CPU)")
    parser.add_argument(
        "--models",
        type=_names,
        help="comma-separated labels, e.g. wrn28_10,mnist_cnn (default: all)",
    )
    parser.add_argument(
        "--what", type=_names, help="from base,addon,scratch,forward,score (default: all)"
    )
    parser.add_argument(
        "--dtype", type=_names, help="float32 and/or bfloat16 (default: the preset's)"
    )
    parser.add_argument("--train-batch", type=int, help="global batch of the train steps")
    parser.add_argument("--score-batch", type=int, help="global batch of forward and score")
    parser.add_argument("--repeats", type=int, help="timed calls per case (paper: 20)")
    parser.add_argument("--warmup", type=int, help="untimed calls first (paper: 5)")
    parser.add_argument(
        "--peak-tflops", type=float, help="dense peak TFLOP/s per device (default: known GPUs/TPUs)"
    )
    parser.add_argument(
        "--conv",
        choices=("auto", "patches", "lax"),
        help="the zoo's convolution (default: $TAC_JAX_CONV, else auto: patches × matmul "
        "on CPU, lax.conv elsewhere)",
    )
    parser.add_argument("--output", help="also append the JSON lines to this file")
    parser.set_defaults(run=cmd_bench)


# One function per subcommand, each adding its parser with ``set_defaults(run=...)``.
SUBCOMMANDS: list[Callable[[argparse._SubParsersAction], None]] = [
    add_train_parser,
    add_demo_parser,
    add_evaluate_parser,
    add_compare_parser,
    add_score_parser,
    add_bench_parser,
]


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tac-jax", description="Total Activation Classifiers in JAX."
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add in SUBCOMMANDS:
        add(sub)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Runs the command line; returns (and, as a script, exits with) its status."""
    parser = build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and not getattr(args, "overrides", False):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    try:
        return args.run(args, extra)
    except (ValueError, FileNotFoundError) as error:
        message = str(error).strip().splitlines()[0] if str(error).strip() else repr(error)
        print(f"tac-jax {args.command}: error: {message}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as error:
        # A file the system refused (read-only, a folder where a file should be, ...):
        # the error names it. One without a name is not a file problem: a traceback.
        if error.filename is None:
            raise
        print(f"tac-jax {args.command}: error: {_os_error_line(error)}", file=sys.stderr)
        return EXIT_USAGE


def _os_error_line(error: OSError) -> str:
    """``<why>: <file>`` (``<file> -> <file2>`` for a rename), on one line.

    >>> _os_error_line(PermissionError(13, "Permission denied", "runs/a/config.json"))
    'Permission denied: runs/a/config.json'
    """
    why = error.strerror or type(error).__name__
    where = str(error.filename)
    if error.filename2 is not None:
        where += f" -> {error.filename2}"
    return " ".join(f"{why}: {where}".split())


if __name__ == "__main__":
    sys.exit(main())
