"""benchmarks/sweep_profile.py: its reading of compiled HLO, and a run on a tiny budget."""

import importlib.util
import json
from pathlib import Path

SCRIPT = Path(__file__).resolve().parents[1] / "benchmarks" / "sweep_profile.py"


def _module():
    spec = importlib.util.spec_from_file_location("sweep_profile", SCRIPT)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_each_operation_is_named_with_its_output_shape_and_primitive():
    hlo = (
        "  %multiply_add_fusion.7 = f32[3,8,784,128]{3,2,1,0} fusion(%a, %b), kind=kLoop, "
        'calls=%fused_computation.57, metadata={op_name="jit(batched)/vmap()/while/body/add" '
        "stack_frame_id=1012}\n"
        "  ROOT %dot.6 = f32[784,128]{1,0} dot(%x, %y), lhs_contracting_dims={0}, "
        'metadata={op_name="jit(single)/transpose(jvp())/dot_general"}\n'
        "  %p = f32[2]{0} parameter(0)\n"
    )
    assert _module()._op_table(hlo) == {
        "multiply_add_fusion.7": ("f32[3,8,784,128]", "add"),
        "dot.6": ("f32[784,128]", "dot_general"),
    }


def test_both_modes_are_profiled_and_their_shares_ranked(tmp_path):
    out = tmp_path / "profile.json"
    _module().main(["--steps", "5", "--top", "4", "--out", str(out)])
    record = json.loads(out.read_text())
    for mode in ("sequential", "vmapped"):
        shares = [row["share"] for row in record[mode]["top_ops"]]
        assert len(shares) == 4 and shares == sorted(shares, reverse=True)
        assert 0 < sum(shares) <= 1 + 1e-9
        assert record[mode]["wall_s"] > 0 and record[mode]["traced_op_cpu_s"] > 0
    # the vmapped program's operations carry the runs' axes: 3 seeds x 8 learning rates
    assert any("[3,8," in row["shape"] for row in record["vmapped"]["top_ops"])
