"""The ``jaxopt-lab`` command line: ``train | bench | minimize``.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments
and sets ``func`` to the function that runs it. Heavy modules (TensorFlow, Flax,
matplotlib) are imported inside those functions so ``jaxopt-lab --help`` stays fast.

Every argument is checked before any data are loaded or anything is compiled; a bad one
stops the command with one line naming its flag (``--clip-norm``, not ``max_norm``) and
exit status 1 (2 for what argparse itself rejects). Errors of the user's making (bad
values, missing or corrupt files, a diverged run) never show a traceback; a bug in the
program still does.

The optimizer studies are not part of the installed command: they live in the
repository's ``experiments/`` folder and run from a checkout as ``python -m experiments``.
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
import tempfile
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from jaxopt_lab.optim.base import (
    ScalarOrSchedule,
    check_finite,
    check_learning_rate,
    check_non_negative,
    check_positive,
    check_positive_int,
    check_unit_interval,
)

EXIT_ERROR = 1
EXIT_INTERRUPTED = 130


class UsageError(ValueError):
    """A command-line argument that cannot work; the message names its flag."""


class _Parser(argparse.ArgumentParser):
    """argparse with defaults shown in ``--help`` and one-line errors (no usage dump)."""

    def __init__(self, *args: Any, **kwargs: Any):
        kwargs.setdefault("formatter_class", argparse.ArgumentDefaultsHelpFormatter)
        super().__init__(*args, **kwargs)

    def error(self, message: str) -> None:  # argparse's hook; it must not return
        self.exit(2, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def _error(args: argparse.Namespace, error: Exception | str) -> int:
    """Print a user-facing error (no traceback) for subcommand ``args.command``; exit 1."""
    print(f"jaxopt-lab {args.command}: error: {error}", file=sys.stderr)
    return EXIT_ERROR


# --------------------------------------------------------------------------- checks


def _checked(check: Callable[[str, Any], None], flag: str, value: Any) -> None:
    """Run one of :mod:`jaxopt_lab.optim.base`'s checks with the flag as the name."""
    try:
        check(flag, value)
    except ValueError as error:
        raise UsageError(str(error)) from None


def _check_learning_rate(flag: str, value: float) -> None:
    check_learning_rate(value, name=flag)


def _check_finite_positive(flag: str, value: float) -> None:
    _checked(check_positive, flag, value)
    _checked(check_finite, flag, value)


def _nearest_existing(path: Path) -> Path:
    """``path`` or its closest ancestor that exists."""
    path = path.absolute()
    while not path.exists():
        path = path.parent
    return path


def _check_writable_location(flag: str, path: Path, *, folder: bool) -> None:
    """``path`` can be created (or is there) as a folder (``folder``) or a file.

    Creates nothing: the nearest existing ancestor must be a folder we can write in,
    probed with a temporary file that is removed at once.
    """
    if path.exists() and path.is_dir() != folder:
        kind = "a file, not a folder" if folder else "a folder, not a file"
        raise UsageError(f"{flag} {path} is {kind}")
    existing = _nearest_existing(path if folder else path.parent)
    if not existing.is_dir():
        raise UsageError(f"{flag} {path} is inside {existing}, which is a file")
    try:
        with tempfile.TemporaryFile(dir=existing):
            pass
    except OSError as error:
        raise UsageError(f"{flag} {path} is not writable: {error.strerror or error}") from None


def _check_positive_ints(flag: str, values: Sequence[int], upper: int | None = None) -> None:
    for value in values:
        _checked(check_positive_int, flag, value)
        if upper is not None and value > upper:
            raise UsageError(f"{flag} must be at most {upper} (the training examples), got {value}")


# --------------------------------------------------------------------------- train

# --schedule's choices: how the learning rate moves over the steps
SCHEDULES = ("constant", "linear", "cosine")

# checkpoint configuration key -> the flag that sets it
_FLAGS = {
    "epochs": "--epochs",
    "batch_size": "--batch-size",
    "seed": "--seed",
    "optimizer": "--optimizer",
    "learning_rate": "--learning-rate",
    "schedule": "--schedule",
    "decay_epochs": "--decay-epochs",
    "clip_norm": "--clip-norm",
    "clip_value": "--clip-value",
    "hidden_sizes": "--hidden-sizes",
    "dropout": "--dropout",
    "dataset": "--dataset",
    "mixed_precision": "--mixed-precision",
    "data_parallel": "--data-parallel",
}


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    """``train``: the MNIST MLP with any optimizer, writing a run folder."""
    from jaxopt_lab.optim.registry import OPTIMIZER_NAMES
    from jaxopt_lab.training.data import SUPPORTED_DATASETS

    parser = subparsers.add_parser(
        "train",
        help="train the MNIST MLP with any optimizer",
        description="Train an MLP on a 28x28 TFDS dataset; write metrics, history, "
        "figures and a checkpoint to --out. Training stops with exit status 1 when the "
        "loss diverges (NaN, infinite, or 10x its starting value), keeping the last good "
        "checkpoint; Ctrl-C keeps the last completed epoch (continue with --resume).",
    )
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZER_NAMES, help="optimizer")
    parser.add_argument("--learning-rate", type=float, default=1e-3, help="learning rate (> 0)")
    parser.add_argument(
        "--schedule",
        default="constant",
        choices=SCHEDULES,
        help="the learning rate over the steps: constant, or decaying from --learning-rate "
        "to 0 over --decay-epochs, linearly or along a half cosine (optax's schedules)",
    )
    parser.add_argument(
        "--decay-epochs",
        type=int,
        default=None,
        help="epochs a decaying --schedule takes to reach 0 (it stays 0 after); None: --epochs",
    )
    parser.add_argument("--epochs", type=int, default=5, help="epochs to reach in total")
    parser.add_argument("--batch-size", type=int, default=32, help="examples per step")
    parser.add_argument(
        "--seed", type=int, default=0, help="seed of initialisation, dropout and order"
    )
    parser.add_argument("--clip-norm", type=float, default=None, help="clip by global norm")
    parser.add_argument("--clip-value", type=float, default=None, help="clip each element")
    parser.add_argument(
        "--hidden-sizes", type=int, nargs="+", default=[128], help="widths of the hidden layers"
    )
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout rate in [0, 1)")
    parser.add_argument("--dataset", default="mnist", choices=SUPPORTED_DATASETS, help="dataset")
    parser.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data directory; None: $TFDS_DATA_DIR, else TFDS's default",
    )
    parser.add_argument(
        "--manual-dir",
        default=None,
        help="directory with the original .gz files, for an offline preparation; None: "
        "$MNIST_DIR for mnist, else $JAXOPT_LAB_DATA/<dataset>, else "
        "<data-dir>/downloads/manual",
    )
    parser.add_argument("--out", default="runs/train", help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    parser.add_argument(
        "--overwrite", action="store_true", help="start afresh in a folder that holds a run"
    )
    parser.add_argument(
        "--allow-config-change",
        action="store_true",
        help="with --resume: continue even though a setting differs from the checkpoint's",
    )
    parser.add_argument(
        "--data-parallel", action="store_true", help="shard each batch over all devices"
    )
    parser.add_argument(
        "--mixed-precision", action="store_true", help="bfloat16 compute, float32 parameters"
    )
    parser.set_defaults(func=_run_train)
    _add_compilation_cache_options(parser)


def _train_config(args: argparse.Namespace) -> dict[str, Any]:
    """The run's configuration, as saved in its checkpoint (keys of :data:`_FLAGS`)."""
    from jaxopt_lab.training.runs import run_config

    return run_config(
        args.epochs,
        args.batch_size,
        args.seed,
        {
            "optimizer": args.optimizer,
            "learning_rate": args.learning_rate,
            "schedule": args.schedule,
            "decay_epochs": _decay_epochs(args),
            "clip_norm": args.clip_norm,
            "clip_value": args.clip_value,
            "hidden_sizes": args.hidden_sizes,
            "dropout": args.dropout,
            "dataset": args.dataset,
            "mixed_precision": args.mixed_precision,
            "data_parallel": args.data_parallel,
        },
    )


def _decay_epochs(args: argparse.Namespace) -> int | None:
    """The epochs a decaying schedule spans (None for a constant learning rate)."""
    if args.schedule == "constant":
        return None
    return args.epochs if args.decay_epochs is None else args.decay_epochs


def _learning_rate(args: argparse.Namespace, steps_per_epoch: int) -> ScalarOrSchedule:
    """``--learning-rate`` as a number, or as the ``--schedule`` over the run's steps."""
    import optax

    if args.schedule == "constant":
        return args.learning_rate
    steps = _decay_epochs(args) * steps_per_epoch
    if args.schedule == "linear":
        return optax.linear_schedule(args.learning_rate, 0.0, steps)
    return optax.cosine_decay_schedule(args.learning_rate, steps)


def _check_train_args(args: argparse.Namespace) -> None:
    """Every ``train`` argument, and the state of the run folder, before any work."""
    import jax

    from jaxopt_lab.training.data import TRAIN_SIZES

    _checked(_check_learning_rate, "--learning-rate", args.learning_rate)
    _checked(check_positive_int, "--epochs", args.epochs)
    if args.decay_epochs is not None:
        if args.schedule == "constant":
            raise UsageError("--decay-epochs needs a decaying --schedule (linear or cosine)")
        _checked(check_positive_int, "--decay-epochs", args.decay_epochs)
    _check_positive_ints("--batch-size", [args.batch_size], upper=TRAIN_SIZES[args.dataset])
    if args.data_parallel and args.batch_size % jax.device_count():
        raise UsageError(
            f"--batch-size must be a multiple of the {jax.device_count()} devices with "
            f"--data-parallel, got {args.batch_size}"
        )
    _checked(check_non_negative, "--seed", args.seed)
    for flag, value in (("--clip-norm", args.clip_norm), ("--clip-value", args.clip_value)):
        if value is not None:
            _check_finite_positive(flag, value)
    _check_positive_ints("--hidden-sizes", args.hidden_sizes)
    _checked(check_unit_interval, "--dropout", args.dropout)
    if args.data_dir is not None:
        data_dir = Path(args.data_dir)
        if data_dir.exists() and not data_dir.is_dir():
            raise UsageError(f"--data-dir {data_dir} is a file, not a folder")
        if not _nearest_existing(data_dir).is_dir():
            raise UsageError(f"--data-dir {data_dir} is inside a file")
    if args.manual_dir is not None and not Path(args.manual_dir).is_dir():
        raise UsageError(f"--manual-dir {args.manual_dir} is not a folder")
    _check_writable_location("--out", Path(args.out), folder=True)
    _check_run_folder(args)


def _check_run_folder(args: argparse.Namespace) -> None:
    """--resume needs a readable checkpoint of the same settings; without it, the folder
    must not hold a run unless --overwrite says to replace it."""
    from jaxopt_lab.training.runs import RunFolder, config_changes, read_summary

    run = RunFolder(args.out)
    if args.resume and args.overwrite:
        raise UsageError("--resume and --overwrite exclude each other")
    if args.allow_config_change and not args.resume:
        raise UsageError("--allow-config-change only applies with --resume")
    if not args.resume:
        if run.holds_a_run() and not args.overwrite:
            raise UsageError(
                f"--out {run.path} already holds a run; pass --resume to continue it, "
                "--overwrite to start it afresh, or choose another --out"
            )
        return
    if not run.checkpoint_path.exists():
        raise UsageError(
            f"--resume: no checkpoint at {run.checkpoint_path}; run without --resume to start"
        )
    summary = read_summary(run.checkpoint_path)  # CheckpointError names the file
    if summary.epoch > args.epochs:
        raise UsageError(
            f"--epochs {args.epochs} is before the checkpoint's epoch {summary.epoch}; "
            f"pass --epochs {summary.epoch} or more"
        )
    changes = config_changes(summary.config, _train_config(args))
    if changes and not args.allow_config_change:
        described = "; ".join(
            f"{_FLAGS.get(name, name)} was {old!r}, now {new!r}"
            for name, (old, new) in changes.items()
        )
        raise UsageError(
            f"--resume: the run in {run.path} was started with other settings ({described}); "
            "pass the same values, or --allow-config-change to continue with the new ones"
        )


def _resume_command(args: argparse.Namespace, argv: Sequence[str]) -> str:
    """The command line that continues this run."""
    kept = [a for a in argv if a not in ("--overwrite", "--resume")]
    return shlex.join(["jaxopt-lab", *kept, "--resume"])


def _run_train(args: argparse.Namespace) -> int:
    from jaxopt_lab.training.data import DatasetError
    from jaxopt_lab.training.loop import TrainingDivergedError
    from jaxopt_lab.training.runs import CheckpointError, ConfigChangedError, RunFolder

    try:
        _check_train_args(args)
        _train(args)
    except KeyboardInterrupt:
        run = RunFolder(args.out)
        if run.checkpoint_path.exists():
            from jaxopt_lab.training.runs import read_summary

            summary = read_summary(run.checkpoint_path)
            run.write_history(summary.history)  # in case Ctrl-C came between the two writes
            kept = f"epoch {summary.epoch} is kept in {run.path}"
            hint = f"continue with: {_resume_command(args, args.argv)}"
        else:
            kept, hint = "no epoch had finished, nothing was kept", "run the command again"
        print(f"\njaxopt-lab train: interrupted; {kept}; {hint}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (
        UsageError,
        DatasetError,
        TrainingDivergedError,
        CheckpointError,
        ConfigChangedError,
        OSError,
    ) as error:
        return _error(args, error)
    print(f"wrote {args.out}/metrics.json")
    return 0


def _train(args: argparse.Namespace) -> None:
    import jax.numpy as jnp
    from flax import nnx

    from jaxopt_lab.optim.registry import make_optimizer
    from jaxopt_lab.training import data
    from jaxopt_lab.training.loop import fit
    from jaxopt_lab.training.models import MLP
    from jaxopt_lab.training.parallel import initialize_distributed

    initialize_distributed()
    dataset = data.load_dataset(
        args.dataset, data_dir=args.data_dir, manual_dir=args.manual_dir, progress=True
    )
    steps_per_epoch = dataset.train_labels.shape[0] // args.batch_size
    optimizer = make_optimizer(
        args.optimizer,
        _learning_rate(args, steps_per_epoch),
        clip_norm=args.clip_norm,
        clip_value=args.clip_value,
    )
    model = MLP(
        hidden_sizes=tuple(args.hidden_sizes),
        num_classes=dataset.num_classes,
        dropout_rate=args.dropout,
        rngs=nnx.Rngs(args.seed),
    )
    config = _train_config(args)
    run_info = {k: v for k, v in config.items() if k not in ("epochs", "batch_size", "seed")}
    fit(
        model,
        optimizer,
        dataset,
        epochs=args.epochs,
        batch_size=args.batch_size,
        seed=args.seed,
        out_dir=args.out,
        resume=args.resume,
        overwrite=args.overwrite,
        allow_config_change=args.allow_config_change,
        data_parallel=args.data_parallel,
        compute_dtype=jnp.bfloat16 if args.mixed_precision else jnp.float32,
        run_info=run_info,
        # Everything else the epoch's program depends on: the optimizer's schedule spans
        # decay_epochs (in run_info), so the number of epochs is not part of it.
        program_id=json.dumps(run_info, sort_keys=True),
    )


# --------------------------------------------------------------------------- bench


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    """``bench``: optimizer step timings against optax and MNIST training throughput."""
    from jaxopt_lab.bench import BENCHMARKED

    parser = subparsers.add_parser(
        "bench",
        help="time optimizer steps (vs optax and a streaming baseline) and training",
        description="Time the jitted update+apply of every optimizer against optax's twin "
        "and a same-bytes streaming step on parameter pytrees of several sizes, and the "
        "MNIST MLP's training throughput per batch size. Writes JSON (after each section) "
        "and a PNG.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--out", default="runs/bench/bench.json", help="JSON file to write")
    parser.add_argument(
        "--sizes",
        type=float,
        nargs="+",
        default=None,
        help="parameter counts, e.g. 1e5 1e7; None: 1e5 1e6 1e7 1e8 (--quick: 1e5 1e6)",
    )
    parser.add_argument(
        "--optimizers", nargs="+", default=None, choices=BENCHMARKED, help="optimizers; None: all"
    )
    parser.add_argument(
        "--batch-sizes",
        type=int,
        nargs="+",
        default=None,
        help="training batch sizes; None: 32 128 512 1024 4096 (--quick: 128 1024)",
    )
    parser.add_argument(
        "--repeats", type=int, default=None, help="timed calls per round; None: 10 (--quick: 3)"
    )
    parser.add_argument(
        "--skip-training", action="store_true", help="optimizer steps only (no MNIST)"
    )
    parser.set_defaults(func=_run_bench)
    _add_compilation_cache_options(parser)


def _check_bench_args(args: argparse.Namespace) -> None:
    from jaxopt_lab.bench import MIN_SIZE
    from jaxopt_lab.training.data import TRAIN_SIZES

    for size in args.sizes or ():
        _checked(check_finite, "--sizes", size)
        if size < MIN_SIZE or size != int(size):
            raise UsageError(f"--sizes must be whole numbers >= {MIN_SIZE}, got {size:g}")
    if args.repeats is not None:
        _checked(check_positive_int, "--repeats", args.repeats)
    _check_positive_ints("--batch-sizes", args.batch_sizes or (), upper=TRAIN_SIZES["mnist"])
    _check_writable_location("--out", Path(args.out), folder=False)


def _run_bench(args: argparse.Namespace) -> int:
    from jaxopt_lab import bench
    from jaxopt_lab.runtime import write_atomic
    from jaxopt_lab.training.data import DatasetError, load_dataset

    try:
        _check_bench_args(args)
        dataset = None if args.skip_training else load_dataset("mnist", progress=True)
    except (UsageError, DatasetError) as error:
        return _error(args, error)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)

    def write_section(report: dict[str, Any], section: str) -> None:
        """Save the report so far and print the section that just finished."""
        write_atomic(out, bench.report_json(report).encode())
        table = (
            bench.format_optimizer_table(report["optimizers"])
            if section == "optimizers"
            else bench.format_throughput_table(report["training"])
        )
        print(f"{table}\n(saved to {out})\n", flush=True)

    report = bench.run_suite(
        quick=args.quick,
        sizes=[int(s) for s in args.sizes] if args.sizes else None,
        optimizers=args.optimizers,
        batch_sizes=args.batch_sizes,
        dataset=dataset,
        repeats=args.repeats,
        on_section=write_section,
    )
    bench.plot_bench(report, out.with_suffix(".png"))
    skipped = report["settings"]["skipped_sizes_memory"]
    if skipped:
        print(f"skipped (not enough memory): {skipped}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


# --------------------------------------------------------------------------- minimize


def _add_minimize(subparsers: argparse._SubParsersAction) -> None:
    """``minimize``: solve an analytic problem with ``jaxopt_lab.minimize`` and print it."""
    from jaxopt_lab.optim.solvers import METHODS
    from jaxopt_lab.problems import PROBLEMS

    parser = subparsers.add_parser(
        "minimize",
        help="minimise an analytic problem (L-BFGS, Newton, first-order) and print the result",
        description="Run jaxopt_lab.minimize (one jitted while_loop) on an analytic problem "
        "from its default start and print iterations, evaluations, value and gradient norm. "
        "Exits with status 1 when the objective or its gradient became NaN or infinite.",
    )
    parser.add_argument("--problem", choices=sorted(PROBLEMS), default="rosenbrock", help="problem")
    parser.add_argument(
        "--dim", type=int, default=2, help="dimension (quadratic, rosenbrock, rastrigin)"
    )
    parser.add_argument("--condition-number", type=float, default=1e3, help="quadratic only")
    parser.add_argument("--method", default="lbfgs", choices=METHODS, help="method")
    parser.add_argument("--tol", type=float, default=1e-5, help="stop at ||grad||_2 <= tol")
    parser.add_argument("--maxiter", type=int, default=1000, help="iteration budget")
    parser.add_argument(
        "--learning-rate",
        type=float,
        default=None,
        help="first-order methods only; None: the method's own, 1e-3",
    )
    parser.add_argument("--x64", action="store_true", help="solve in float64")
    parser.set_defaults(func=_run_minimize)
    _add_compilation_cache_options(parser)


def _takes_learning_rate(method: str) -> bool:
    import inspect

    from jaxopt_lab.optim.solvers import METHOD_BUILDERS

    return "learning_rate" in inspect.signature(METHOD_BUILDERS[method]).parameters


def _check_minimize_args(args: argparse.Namespace) -> None:
    from jaxopt_lab.optim.solvers import METHODS

    sized = args.problem in ("quadratic", "rosenbrock", "rastrigin")
    smallest = 2 if args.problem == "rosenbrock" else 1
    if sized and (args.dim < smallest):
        raise UsageError(f"--dim must be >= {smallest} for {args.problem}, got {args.dim}")
    _check_finite_positive("--condition-number", args.condition_number)
    if args.condition_number < 1:
        raise UsageError(f"--condition-number must be >= 1, got {args.condition_number:g}")
    _checked(check_non_negative, "--tol", args.tol)
    _checked(check_finite, "--tol", args.tol)
    _checked(check_positive_int, "--maxiter", args.maxiter)
    if args.learning_rate is not None:
        if not _takes_learning_rate(args.method):
            first_order = ", ".join(m for m in METHODS if _takes_learning_rate(m))
            raise UsageError(
                f"--learning-rate applies to the first-order methods ({first_order}), "
                f"not to --method {args.method}"
            )
        _checked(_check_learning_rate, "--learning-rate", args.learning_rate)


def _run_minimize(args: argparse.Namespace) -> int:
    import time

    import jax
    import numpy as np

    try:
        _check_minimize_args(args)
    except UsageError as error:
        return _error(args, error)
    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jaxopt_lab as jl
    from jaxopt_lab import problems
    from jaxopt_lab.optim.solvers import Status

    options = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
    if args.problem == "quadratic":
        problem = problems.quadratic(args.dim, args.condition_number)
    elif args.problem in ("rosenbrock", "rastrigin"):
        problem = problems.PROBLEMS[args.problem](args.dim)
    else:
        problem = problems.PROBLEMS[args.problem]()
    start = time.perf_counter()
    result = jax.block_until_ready(
        jl.minimize(
            problem.fun, problem.x0, args.method, tol=args.tol, maxiter=args.maxiter, **options
        )
    )
    seconds = time.perf_counter() - start
    print(f"problem      {problem.name} (dim {np.size(problem.x0)}, {result.fun.dtype})")
    print(f"method       {args.method}")
    print(f"converged    {bool(result.converged)} (||grad||_2 <= {args.tol:g})")
    print(f"status       {result.message}")
    print(f"iterations   {int(result.iterations)}")
    print(f"fevals       {int(result.fevals)}")
    print(
        f"f(x)         {float(result.fun):.10g}"
        + ("" if problem.f_min is None else f"   (known minimum {problem.f_min:.10g})")
    )
    print(f"||grad||_2   {float(result.grad_norm):.3e}")
    if problem.x_min is not None:
        distance = float(np.linalg.norm(np.asarray(result.x) - np.asarray(problem.x_min)))
        print(f"||x - x*||   {distance:.3e}")
    print(f"seconds      {seconds:.3f} (compilation included)")
    if int(result.status) == Status.NON_FINITE:
        hint = "a smaller --learning-rate" if args.learning_rate is not None else "another method"
        return _error(args, f"the solve diverged ({result.message}); try {hint}")
    return 0


# --------------------------------------------------------------------------- entry point


def _add_compilation_cache_options(parser: argparse.ArgumentParser) -> None:
    """Every subcommand keeps its compiled programs in JAX's persistent cache."""
    group = parser.add_argument_group("compilation cache")
    group.add_argument(
        "--compilation-cache",
        default=None,
        metavar="FOLDER",
        help="folder of compiled programs reused by later runs, or off for none (a folder "
        "named off: ./off; default: $JAXOPT_LAB_COMPILATION_CACHE, else "
        "~/.cache/jaxopt_lab/xla)",
    )
    group.add_argument(
        "--no-compilation-cache",
        action="store_true",
        help="compile everything afresh and keep nothing (also JAXOPT_LAB_COMPILATION_CACHE=off)",
    )


def _use_compilation_cache(args: argparse.Namespace) -> None:
    from jaxopt_lab.runtime import (
        compilation_cache_folder,
        default_compilation_cache,
        enable_compilation_cache,
    )

    if args.no_compilation_cache and args.compilation_cache is not None:
        raise UsageError("--compilation-cache and --no-compilation-cache exclude each other")
    if args.compilation_cache is not None:
        folder = compilation_cache_folder(args.compilation_cache)
    elif args.no_compilation_cache:
        folder = None
    else:
        folder = default_compilation_cache()
    if folder is None:
        return
    _check_writable_location("--compilation-cache", folder.expanduser(), folder=True)
    enable_compilation_cache(folder)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(
        prog="jaxopt-lab",
        description="JAX optimization lab: train, compare and benchmark optimizers.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    args = build_parser().parse_args(argv)
    args.argv = argv
    try:
        _use_compilation_cache(args)
    except UsageError as error:
        return _error(args, error)
    return int(args.func(args) or 0)


# The subcommands, in the order `jaxopt-lab --help` lists them (defined above).
COMMANDS: tuple = (
    _add_train,
    _add_bench,
    _add_minimize,
)

if __name__ == "__main__":
    sys.exit(main())
