"""benchmarks/sweep_profile.py: its reading of compiled HLO, and a run on a tiny budget."""

import json

import benchmark_scripts


def test_each_operation_is_named_with_its_output_shape_and_primitive():
    hlo = (
        "  %multiply_add_fusion.7 = f32[3,8,784,128]{3,2,1,0} fusion(%a, %b), kind=kLoop, "
        'calls=%fused_computation.57, metadata={op_name="jit(batched)/vmap()/while/body/add" '
        "stack_frame_id=1012}\n"
        "  ROOT %dot.6 = f32[784,128]{1,0} dot(%x, %y), lhs_contracting_dims={0}, "
        'metadata={op_name="jit(single)/transpose(jvp())/dot_general"}\n'
        "  %p = f32[2]{0} parameter(0)\n"
    )
    assert benchmark_scripts.load("sweep_profile")._op_table(hlo) == {
        "multiply_add_fusion.7": ("f32[3,8,784,128]", "add"),
        "dot.6": ("f32[784,128]", "dot_general"),
    }


def test_both_modes_are_profiled_and_their_shares_ranked(tmp_path):
    out = tmp_path / "profile.json"
    benchmark_scripts.load("sweep_profile").main(["--steps", "5", "--top", "4", "--out", str(out)])
    record = json.loads(out.read_text())
    for mode in ("sequential", "vmapped"):
        shares = [row["share"] for row in record[mode]["top_ops"]]
        assert len(shares) == 4 and shares == sorted(shares, reverse=True)
        assert 0 < sum(shares) <= 1 + 1e-9
        assert record[mode]["wall_s"] > 0 and record[mode]["traced_op_cpu_s"] > 0
    # the vmapped program's operations carry the runs' axes: 3 seeds x 8 learning rates
    assert any("[3,8," in row["shape"] for row in record["vmapped"]["top_ops"])
