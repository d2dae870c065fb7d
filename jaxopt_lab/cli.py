"""The ``jaxopt-lab`` command line: ``train | bench | minimize``.

Each subcommand is one ``_add_<name>(subparsers)`` function that declares its arguments
and sets ``func`` to the function that runs it. Heavy modules (TensorFlow, Flax,
matplotlib) are imported inside those functions so ``jaxopt-lab --help`` stays fast.

The optimizer studies are not part of the installed command: they live in the
repository's ``experiments/`` folder and run from a checkout as ``python -m experiments``.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence


def _error(args: argparse.Namespace, error: Exception) -> int:
    """Print a user-facing error (no traceback) for subcommand ``args.command``; exit 1."""
    print(f"jaxopt-lab {args.command}: error: {error}", file=sys.stderr)
    return 1


def _add_train(subparsers: argparse._SubParsersAction) -> None:
    """``train``: the MNIST MLP with any optimizer, writing a run folder."""
    from jaxopt_lab.optim.registry import OPTIMIZER_NAMES

    parser = subparsers.add_parser(
        "train",
        help="train the MNIST MLP with any optimizer",
        description="Train an MLP on a 28x28 TFDS dataset; write metrics, history, "
        "figures and a checkpoint to --out.",
    )
    parser.add_argument("--optimizer", default="adam", choices=OPTIMIZER_NAMES)
    parser.add_argument("--learning-rate", type=float, default=1e-3)
    parser.add_argument("--epochs", type=int, default=5)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--clip-norm", type=float, default=None, help="clip by global norm")
    parser.add_argument("--clip-value", type=float, default=None, help="clip each element")
    parser.add_argument("--hidden-sizes", type=int, nargs="+", default=[128])
    parser.add_argument("--dropout", type=float, default=0.2, help="dropout rate")
    parser.add_argument("--dataset", default="mnist", help="mnist, fashion_mnist or kmnist")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory")
    parser.add_argument(
        "--manual-dir", default=None, help="directory with the original files (offline)"
    )
    parser.add_argument("--out", default="runs/train", help="run folder")
    parser.add_argument("--resume", action="store_true", help="continue from --out's checkpoint")
    parser.add_argument(
        "--data-parallel", action="store_true", help="shard each batch over all devices"
    )
    parser.add_argument(
        "--mixed-precision", action="store_true", help="bfloat16 compute, float32 parameters"
    )
    parser.set_defaults(func=_run_train)


def _run_train(args: argparse.Namespace) -> int:
    import jax.numpy as jnp
    from flax import nnx

    from jaxopt_lab.optim.registry import make_optimizer
    from jaxopt_lab.training.data import DatasetError, load_dataset
    from jaxopt_lab.training.loop import TrainingDivergedError, fit
    from jaxopt_lab.training.models import MLP
    from jaxopt_lab.training.parallel import initialize_distributed

    try:
        initialize_distributed()
        optimizer = make_optimizer(
            args.optimizer, args.learning_rate, clip_norm=args.clip_norm, clip_value=args.clip_value
        )
        dataset = load_dataset(args.dataset, data_dir=args.data_dir, manual_dir=args.manual_dir)
        model = MLP(
            hidden_sizes=tuple(args.hidden_sizes),
            num_classes=dataset.num_classes,
            dropout_rate=args.dropout,
            rngs=nnx.Rngs(args.seed),
        )
        fit(
            model,
            optimizer,
            dataset,
            epochs=args.epochs,
            batch_size=args.batch_size,
            seed=args.seed,
            out_dir=args.out,
            resume=args.resume,
            data_parallel=args.data_parallel,
            compute_dtype=jnp.bfloat16 if args.mixed_precision else jnp.float32,
            run_info={
                "optimizer": args.optimizer,
                "learning_rate": args.learning_rate,
                "clip_norm": args.clip_norm,
                "clip_value": args.clip_value,
                "hidden_sizes": args.hidden_sizes,
                "dropout": args.dropout,
                "data_parallel": args.data_parallel,
            },
        )
    except (DatasetError, TrainingDivergedError, ValueError, FileNotFoundError) as error:
        return _error(args, error)
    print(f"wrote {args.out}/metrics.json")
    return 0


def _add_bench(subparsers: argparse._SubParsersAction) -> None:
    """``bench``: optimizer step timings against optax and MNIST training throughput."""
    parser = subparsers.add_parser(
        "bench",
        help="time optimizer steps (vs optax and a streaming baseline) and training",
        description="Time the jitted update+apply of every optimizer against optax's twin "
        "and a same-bytes streaming step on parameter pytrees of several sizes, and the "
        "MNIST MLP's training throughput per batch size. Writes JSON and a PNG.",
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, few repeats")
    parser.add_argument("--out", default="runs/bench/bench.json", help="JSON file to write")
    parser.add_argument(
        "--sizes", type=float, nargs="+", default=None, help="parameter counts, e.g. 1e5 1e7"
    )
    parser.add_argument("--optimizers", nargs="+", default=None, help="default: all")
    parser.add_argument("--batch-sizes", type=int, nargs="+", default=None)
    parser.add_argument("--repeats", type=int, default=None, help="timed calls per round")
    parser.add_argument(
        "--skip-training", action="store_true", help="optimizer steps only (no MNIST)"
    )
    parser.set_defaults(func=_run_bench)


def _run_bench(args: argparse.Namespace) -> int:
    import json
    from pathlib import Path

    from jaxopt_lab import bench

    dataset = None
    if not args.skip_training:
        from jaxopt_lab.training.data import DatasetError, load_dataset

        try:
            dataset = load_dataset("mnist")
        except DatasetError as error:
            return _error(args, error)
    try:
        report = bench.run_suite(
            quick=args.quick,
            sizes=[int(s) for s in args.sizes] if args.sizes else None,
            optimizers=args.optimizers,
            batch_sizes=args.batch_sizes,
            dataset=dataset,
            repeats=args.repeats,
        )
    except ValueError as error:
        return _error(args, error)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2))
    bench.plot_bench(report, out.with_suffix(".png"))
    print(bench.format_optimizer_table(report["optimizers"]))
    if report["training"]:
        print()
        print(bench.format_throughput_table(report["training"]))
    skipped = report["settings"]["skipped_sizes_memory"]
    if skipped:
        print(f"skipped (not enough memory): {skipped}")
    print(f"wrote {out} and {out.with_suffix('.png')}")
    return 0


def _add_minimize(subparsers: argparse._SubParsersAction) -> None:
    """``minimize``: solve an analytic problem with ``jaxopt_lab.minimize`` and print it."""
    from jaxopt_lab.optim.solvers import METHODS
    from jaxopt_lab.problems import PROBLEMS

    parser = subparsers.add_parser(
        "minimize",
        help="minimise an analytic problem (L-BFGS, Newton, first-order) and print the result",
        description="Run jaxopt_lab.minimize (one jitted while_loop) on an analytic problem "
        "from its default start and print iterations, evaluations, value and gradient norm.",
    )
    parser.add_argument("--problem", choices=sorted(PROBLEMS), default="rosenbrock")
    parser.add_argument(
        "--dim", type=int, default=2, help="dimension (quadratic, rosenbrock, rastrigin)"
    )
    parser.add_argument("--condition-number", type=float, default=1e3, help="quadratic only")
    parser.add_argument("--method", default="lbfgs", choices=METHODS)
    parser.add_argument("--tol", type=float, default=1e-5, help="stop at ||grad||_2 <= tol")
    parser.add_argument("--maxiter", type=int, default=1000)
    parser.add_argument("--learning-rate", type=float, default=None, help="first-order methods")
    parser.add_argument("--x64", action="store_true", help="solve in float64")
    parser.set_defaults(func=_run_minimize)


def _run_minimize(args: argparse.Namespace) -> int:
    import time

    import jax
    import numpy as np

    if args.x64:
        jax.config.update("jax_enable_x64", True)
    import jaxopt_lab as jl
    from jaxopt_lab import problems

    options = {} if args.learning_rate is None else {"learning_rate": args.learning_rate}
    try:
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
    except (ValueError, TypeError) as error:
        return _error(args, error)
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
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="jaxopt-lab",
        description="JAX optimization lab: train, compare and benchmark optimizers.",
    )
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for add_command in COMMANDS:
        add_command(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    return int(args.func(args) or 0)


# The subcommands, in the order `jaxopt-lab --help` lists them (defined above).
COMMANDS: tuple = (
    _add_train,
    _add_bench,
    _add_minimize,
)

if __name__ == "__main__":
    sys.exit(main())
