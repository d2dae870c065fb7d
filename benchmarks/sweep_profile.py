"""Where the CPU time of `make bench-sweep`'s sweep goes, op by op, one run after another
against vmapped: the same 8 learning rates x 3 seeds of the seed MLP with Adam.

The sweep is compiled and run once untimed, run again for its wall and process CPU time,
then run a third time under ``jax.profiler``. Every XLA operation's events in the trace
(one per thread an operation ran on) are summed into CPU seconds; the compiled program's
text gives each operation's output shape and the JAX primitive it came from. The trace
costs time of its own on programs made of many small operations (the sequential mode), so
read its shares, not its seconds, against the untraced wall and CPU time.

    python benchmarks/sweep_profile.py --out runs/bench/sweep_profile.json
"""

from __future__ import annotations

import argparse
import collections
import json
import re
import sys
import tempfile
import time
from pathlib import Path

import jax
from flax import nnx

sys.path.insert(0, str(Path(__file__).resolve().parent))
from bench_sweep import LEARNING_RATES, SEEDS  # noqa: E402

from jaxopt_lab.runtime import device_info  # noqa: E402
from jaxopt_lab.training import sweep as sweep_module  # noqa: E402
from jaxopt_lab.training.data import load_dataset  # noqa: E402
from jaxopt_lab.training.models import MLP  # noqa: E402

# "%name = f32[3,8,784,128]{3,2,1,0} fusion(...), ..., metadata={op_name=".../add" ...}"
_HLO_LINE = re.compile(r"^\s*(?:ROOT )?%([\w.\-]+) = (\S+?)(?:\{[\d,]*\})? .*?op_name=\"([^\"]*)\"")


def _op_table(hlo_text: str) -> dict[str, tuple[str, str]]:
    """HLO instruction name -> (output shape, the JAX primitive it came from)."""
    table = {}
    for line in hlo_text.splitlines():
        match = _HLO_LINE.match(line)
        if match:
            name, shape, op_name = match.groups()
            table[name] = (shape, op_name.rsplit("/", 1)[-1])
    return table


def _xla_op_seconds(trace_dir: Path) -> collections.Counter:
    """CPU seconds per XLA operation: its events on XLA's worker threads, summed."""
    from tensorflow.tsl.profiler.protobuf import xplane_pb2

    (path,) = trace_dir.glob("**/*.xplane.pb")
    space = xplane_pb2.XSpace()
    space.ParseFromString(path.read_bytes())
    seconds: collections.Counter = collections.Counter()
    for plane in space.planes:
        for line in plane.lines:
            if not line.name.startswith("tf_XLAEigen"):
                continue
            for event in line.events:
                name = plane.event_metadata[event.metadata_id].name
                if not name.startswith("ThunkExecutor"):
                    seconds[name] += event.duration_ps * 1e-12
    return seconds


def profile(mode: str, steps: int, top: int) -> dict:
    compiled_texts = []
    compile_timed = sweep_module.runtime.compile_timed

    def keep_text(*args, **kwargs):  # the sweep's own compile, with its program kept
        compiled, seconds = compile_timed(*args, **kwargs)
        compiled_texts.append(compiled.as_text())
        return compiled, seconds

    sweep_module.runtime.compile_timed = keep_text
    data = sweep_module.subset(load_dataset("mnist"), num_train=60000, num_eval=2000, num_val=2000)
    optimizer = sweep_module.named_optimizer("adam")

    def seed_mlp(hyperparameters, key):
        return MLP(rngs=nnx.Rngs(key))

    def run():
        return sweep_module.sweep(
            optimizer,
            {"learning_rate": LEARNING_RATES},
            SEEDS,
            data,
            model_factory=seed_mlp,
            batch_size=32,
            num_evals=5,
            steps_per_eval=steps // 5,
            vectorize=mode == "vmapped",
        )

    try:
        run()
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        wall, cpu = time.perf_counter() - wall, time.process_time() - cpu
        with tempfile.TemporaryDirectory() as tmp:
            with jax.profiler.trace(tmp):
                run()
            seconds = _xla_op_seconds(Path(tmp))
    finally:
        sweep_module.runtime.compile_timed = compile_timed
    ops = _op_table(compiled_texts[-1])
    total = sum(seconds.values())
    rows = [
        {
            "op": name,
            "shape": ops.get(name, ("?", "?"))[0],
            "primitive": ops.get(name, ("?", "?"))[1],
            "cpu_s": value,
            "share": value / total,
        }
        for name, value in seconds.most_common(top)
    ]
    return {"wall_s": wall, "cpu_s": cpu, "traced_op_cpu_s": total, "top_ops": rows}


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=500, help="optimizer steps per run")
    parser.add_argument("--top", type=int, default=12, help="operations listed per mode")
    parser.add_argument("--out", default="runs/bench/sweep_profile.json")
    args = parser.parse_args(argv)
    if args.steps < 5 or args.steps % 5:
        parser.error("--steps must be a positive multiple of 5")
    report = {"device": device_info(), "runs": len(LEARNING_RATES) * len(SEEDS)}
    report["steps_per_run"] = args.steps
    for mode in ("sequential", "vmapped"):
        record = report[mode] = profile(mode, args.steps, args.top)
        print(
            f"\n{mode}: {record['wall_s']:.2f} s wall, {record['cpu_s']:.2f} s CPU untraced; "
            f"{record['traced_op_cpu_s']:.2f} CPU s in XLA operations traced"
        )
        print(f"{'operation':<28} {'output':<26} {'from':<16} {'CPU s':>7} {'share':>6}")
        for row in record["top_ops"]:
            print(
                f"{row['op']:<28} {row['shape']:<26} {row['primitive'][:16]:<16} "
                f"{row['cpu_s']:>7.3f} {row['share']:>6.1%}"
            )
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
