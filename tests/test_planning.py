"""Planning from voxel spacing (archc/planning.py): the rule equals nnU-Net v2's own function; its steps land on a
base spec's downsampling steps; the written spec validates, builds and shows its strides and kernels."""

import json
import os

import pytest
import torch
from conftest import TINY3D, run_python, shapes_and_masks, train_until

import archc
from archc.analysis import analyze, total_stride
from archc.cli import main
from archc.planning import pool_and_conv

# (spacing, patch): isotropic, 3x and 8x anisotropic, 2D and 1D, tiny and huge; the first is nnU-Net's docs example
CASES = [
    ((3.0, 0.78, 0.78), (80, 192, 160)),
    ((1.0, 1.0, 1.0), (128, 128, 128)),
    ((1.0, 1.0, 1.0), (8, 8, 8)),
    ((1.0, 1.0, 1.0), (7, 7, 7)),
    ((1.0, 1.0, 1.0), (12, 12, 12)),
    ((1.0, 1.0, 1.0), (1000, 1000, 1000)),
    ((0.5, 0.5, 0.5), (96, 160, 160)),
    ((3.0, 1.0, 1.0), (64, 192, 192)),
    ((3.0, 1.0, 1.0), (16, 256, 256)),
    ((1.0, 3.0, 1.0), (192, 64, 192)),
    ((2.0, 1.0, 1.0), (64, 128, 128)),
    ((1.99, 1.0, 1.0), (64, 128, 128)),
    ((8.0, 1.0, 1.0), (24, 512, 512)),
    ((5.0, 0.7, 0.7), (32, 512, 512)),
    ((5.0, 0.7, 0.7), (32, 256, 256)),
    ((8.0, 1.0, 1.0), (4, 512, 512)),
    ((8.0, 1.0, 1.0), (3, 20, 20)),
    ((4.4, 0.35, 0.35), (40, 1024, 1024)),
    ((1.0, 8.0, 8.0), (512, 32, 32)),
    ((2.5, 0.8, 1.9), (60, 300, 120)),
    ((1.0, 1.0), (512, 512)),
    ((1.0, 3.0), (512, 170)),
    ((0.7, 0.7), (9, 9)),
    ((1.0,), (4096,)),
    ((6.0, 0.9, 0.9), (2000, 2000, 2000)),
]


def nnunet_topology():
    """nnU-Net v2's network_topology module (numpy alone); CI installs it and sets ARCHC_REQUIRE_NNUNET=1, so a
    missing nnU-Net fails there instead of skipping."""
    try:
        from nnunetv2.experiment_planning.experiment_planners import network_topology
    except ImportError:
        if os.environ.get("ARCHC_REQUIRE_NNUNET") == "1":
            pytest.fail("ARCHC_REQUIRE_NNUNET=1 but nnunetv2 is not installed: pip install --no-deps nnunetv2")
        pytest.skip("nnU-Net is the reference: pip install --no-deps nnunetv2")
    return network_topology


@pytest.mark.parametrize("spacing, patch", CASES)
def test_the_rule_equals_nnunet(spacing, patch):
    """Every output of nnU-Net v2's get_pool_and_conv_props (min_feature_map 4, unlimited pools: its planner's call)."""
    topology = nnunet_topology()
    pools, strides, kernels, padded, divisible = topology.get_pool_and_conv_props(list(spacing), list(patch), 4, 999999)
    ours = pool_and_conv(spacing, patch)
    assert list(ours.pools_per_axis) == list(pools)
    assert ours.strides == strides
    assert ours.kernels == kernels
    assert ours.padded_patch == tuple(int(n) for n in padded)
    assert ours.divisible_by == tuple(int(n) for n in divisible)


def test_the_rule_with_a_cap_on_pools_equals_nnunet():
    topology = nnunet_topology()
    for max_pools in (1, 2, 3):
        pools, strides, kernels, _, _ = topology.get_pool_and_conv_props([3.0, 0.78, 0.78], [80, 192, 160], 4, max_pools)
        ours = pool_and_conv((3.0, 0.78, 0.78), (80, 192, 160), max_pools=max_pools)
        assert (list(ours.pools_per_axis), ours.strides, ours.kernels) == (list(pools), strides, kernels)


def test_the_published_example_and_its_reasons():
    """reference-numbers.md: spacing 3 x 0.78 x 0.78, patch 80x192x160 -> pools 4, 5, 5; the coarse axis waits one step."""
    ours = pool_and_conv((3.0, 0.78, 0.78), (80, 192, 160))
    assert ours.pools_per_axis == (4, 5, 5)
    assert ours.strides == ((1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2), (2, 2, 2))
    assert ours.kernels[:2] == ((1, 3, 3), (3, 3, 3))
    assert ours.steps[0].kept == {0: "its spacing 3 mm is 3.8x the finest (0.78 mm); pooled only within 2x"}
    assert ours.stop == "every axis is under 2 x 4 voxels (5x6x5)"
    assert pool_and_conv((1.0,), (11,)).stop == "only axis 0 could still be pooled and it has 11 voxels, under 3 x 4"


def test_ct_plan_on_the_volumetric_b0():
    """5 x 0.7 x 0.7 mm, 32x512x512: in-plane only for two steps (0.7 -> 2.8 mm), then every axis; kernels 1 along the
    slices until then. The data allow 7 steps, the base has 5 (stem and four strided rows): it takes the first five."""
    planned = archc.plan("efficientnet3d_b0", spacing=(5, 0.7, 0.7), shape=(32, 512, 512))
    plan = archc.lower(planned.spec)
    assert plan.stem.stride == (1, 2, 2) and plan.stem.kernel == (1, 3, 3)
    firsts = [stage.blocks[0] for stage in plan.stages]
    assert [b.stride for b in firsts] == [(1, 1, 1), (1, 2, 2), (2, 2, 2), (2, 2, 2), (1, 1, 1), (2, 2, 2), (1, 1, 1)]
    assert [b.kernel for b in firsts] == [(1, 3, 3), (3, 3, 3), (5, 5, 5), (3, 3, 3), (5, 5, 5), (3, 5, 5), (3, 3, 3)]  # 5 capped to the 4 slices left
    assert total_stride(plan) == (8, 32, 32) == planned.total_stride
    assert plan.resolution == (32, 512, 512)
    assert analyze(plan).warnings == ()
    reasons = planned.reasons
    assert reasons["stages[5].kernel"].endswith("; capped to the 4x16x16 feature map")
    assert reasons["stem.stride"].startswith("downsampling step 1 of 5: stride 1x2x2 pools axis 1, 2 (axis 0 kept: its spacing 5 mm is 7.1x the finest (0.7 mm)")
    assert reasons["stages[0].kernel"].startswith("level 1 (5x1.4x1.4 mm): 1 along axis 0")
    assert planned.notes[0].startswith("the data allow 7 downsampling steps; efficientnet3d_b0 has 5")
    assert planned.spec.scaling.presets == {}


def test_a_plan_pads_the_shape_to_the_total_stride_and_every_kernel_fits():
    planned = archc.plan("efficientnet_b0", spacing=(3, 0.78, 0.78), shape=(70, 190, 150), in_channels=1, num_classes=2)
    plan = archc.lower(planned.spec)
    assert total_stride(plan) == (16, 32, 32)
    assert plan.resolution == (80, 192, 160)
    assert planned.reasons["resolution"].startswith("the 70x190x150 shape padded up on axis 0, 1, 2 to a multiple of the total stride 16x32x32")
    assert analyze(plan).warnings == ()
    assert (plan.in_channels, plan.head.num_classes, plan.dims) == (1, 2, 3)


def test_a_small_volume_keeps_the_base_steps_it_cannot_use():
    """16^3 isotropic: two steps reach 4 voxels; the base's other three downsampling steps keep every axis."""
    planned = archc.plan("efficientnet_b0", spacing=(1, 1, 1), shape=(16, 16, 16))
    plan = archc.lower(planned.spec)
    assert total_stride(plan) == (4, 4, 4)
    assert planned.reasons["stages[3].stride"] == (
        f"downsampling step 4 of 5: stride 1 on every axis: after 2 step(s) {pool_and_conv((1, 1, 1), (16, 16, 16)).stop}")
    assert planned.notes[0].startswith("efficientnet_b0 downsamples 5 times but the data allow 2")
    assert analyze(plan).warnings == ()


def test_segment_adds_a_unet_decoder():
    planned = archc.plan("efficientnet3d_b0", spacing=(5, 0.7, 0.7), shape=(32, 256, 256), task="segment")
    plan = archc.lower(planned.spec)
    assert plan.decoder is not None and plan.head is None
    assert planned.reasons["decoder"].startswith("task segment")


@pytest.mark.parametrize(
    "kwargs, message",
    [
        ({"spacing": (5, 0.7), "shape": (32, 512, 512)}, "spacing has 2 axes but the shape 32x512x512 has 3"),
        ({"spacing": (5, 0, 0.7), "shape": (32, 512, 512)}, "spacing: got 0, expected a positive number per axis"),
        ({"spacing": (1, 1, 1), "shape": (32, 5.5, 8)}, "shape: got 5.5, expected a positive whole number per axis"),
        ({"spacing": (1, 1, 1, 1), "shape": (8, 8, 8, 8)}, "spacing: got 4 values, expected 1 to 3"),
        ({"spacing": (1, 1, 1), "shape": (8, 8, 8), "task": "detect"}, "task: got 'detect', expected one of classify, segment"),
    ],
)
def test_bad_input_is_one_planning_error(kwargs, message):
    with pytest.raises(archc.PlanningError, match=message.replace("(", r"\(").replace(")", r"\)")):
        archc.plan("efficientnet_b0", **kwargs)


def test_cli_writes_a_commented_spec_that_builds_and_shows_its_kernels(tmp_path, capsys):
    out = tmp_path / "planned.yaml"
    assert main(["plan", "efficientnet3d_b0", "--spacing", "5,0.7,0.7", "--shape", "32,256,256", "-o", str(out)]) == 0
    printed = capsys.readouterr().out
    assert f"wrote {out}" in printed and "stem.stride: downsampling step 1 of 5" in printed
    text = out.read_text()
    assert text == archc.plan("efficientnet3d_b0", spacing=(5, 0.7, 0.7), shape=(32, 256, 256)).text
    lines = text.splitlines()
    assert next(line for line in lines if line.startswith("stem:")).startswith("stem: {channels: 32, kernel: 1x3x3, stride: [1, 2, 2]}   # stride: downsampling step 1")
    rows = [line for line in lines if line.startswith("  - ")]
    assert len(rows) == 7 and all("   # " in row for row in rows)  # every row says why
    assert main(["validate", str(out)]) == 0
    capsys.readouterr()
    assert main(["build", str(out), "-q"]) == 0
    built = capsys.readouterr().out.splitlines()
    assert built[3].split()[:6] == ["stem", "conv", "1", "1->32", "1x3x3", "1x2x2"]
    assert main(["info", str(out), "--detail", "layer"]) == 0
    layers = {line.split()[0]: line.split() for line in capsys.readouterr().out.splitlines() if line.startswith(("stem.conv", "stages."))}
    assert layers["stages.0.0.conv_dw"][4:6] == ["1x3x3", "1"]
    assert layers["stages.1.0.conv_dw"][4:6] == ["3", "1x2x2"]


def test_cli_json_and_errors(capsys):
    assert main(["plan", "efficientnet_b0", "--spacing", "1,1,1", "--shape", "64,64,64", "--json"]) == 0
    result = json.loads(capsys.readouterr().out)
    assert result["total_stride"] == [16, 16, 16] and result["nnunet"]["pools_per_axis"] == [4, 4, 4]
    assert {d["path"] for d in result["decisions"]} >= {"resolution", "stem.stride", "stem.kernel", "stages[6].kernel"}
    assert main(["plan", "efficientnet_b0", "--spacing", "1,1", "--shape", "64,64,64"]) == 1
    assert capsys.readouterr().err == "archc: error: spacing has 2 axes but the shape 64x64x64 has 3; give one value per axis for both\n"
    with pytest.raises(SystemExit) as exit_:
        main(["plan", "efficientnet_b0", "--spacing", "1,x,1", "--shape", "64,64,64"])
    assert exit_.value.code == 2
    assert "argument --spacing: expected numbers separated by commas (like 5,0.7,0.7), got '1,x,1'" in capsys.readouterr().err


@pytest.mark.parametrize("spacing, shape", [((5, 0.7, 0.7), (32, 256, 256)), ((1, 1, 1), (64, 64, 64)), ((3, 0.8, 0.8), (12, 64, 64)), ((1, 1), (96, 96))])
def test_every_shipped_spec_plans_without_a_warning(spacing, shape):
    """Every base (uib start kernels, MixNet's mixed kernels, fused blocks, ...): the plan lowers, its input divides the
    total stride and no kernel is wider than its map."""
    for name in archc.builtin_specs():
        if name.startswith("convnext"):  # a stride-4 patchify stem: refused by name (the rule pools by 2 per step)
            with pytest.raises(archc.PlanningError, match="^stem.layers\\[0\\]: .* strides by 4 at once"):
                archc.plan(name, spacing=spacing, shape=shape)
            continue
        planned = archc.plan(name, spacing=spacing, shape=shape)
        plan = archc.lower(planned.spec)
        assert all(r % t == 0 for r, t in zip(plan.resolution, total_stride(plan))), name
        assert analyze(plan).warnings == (), name


def anisotropic_shapes(n: int, seed: int):
    """A sphere and a cube drawn in millimetres on 4 x 1 x 1 mm voxels (8 slices of 32x32), and their masks."""
    return shapes_and_masks(n, size=(8, 32, 32), seed=seed, spacing=(4.0, 1.0, 1.0), min_radius=5.0)


@pytest.mark.slow
def test_a_planned_unet_learns_anisotropic_volumes():
    """tiny3d planned for 4 x 1 x 1 mm, 8x32x32 volumes with --task segment: in-plane strides first, kernels 1 along the
    slices at first; it reaches the held-out Dice of 0.9 that docs/segmentation.md states for the isotropic check."""
    planned = archc.plan(TINY3D, spacing=(4, 1, 1), shape=(8, 32, 32), task="segment", overrides=["decoder.type=unet", "decoder.width=8"])
    plan = archc.lower(planned.spec)
    assert plan.stem.stride == (1, 2, 2) and plan.stem.kernel == (1, 3, 3)
    torch.manual_seed(0)
    x, mask = anisotropic_shapes(64, seed=0)
    held_x, held_mask = anisotropic_shapes(32, seed=1)
    model = archc.load(planned.spec, seed=0)

    def dice() -> float:
        model.eval()
        with torch.no_grad():
            found = model(held_x).argmax(1) == 1
        truth = held_mask == 1
        return (2 * (found & truth).sum() / (found.sum() + truth.sum())).item()

    best, steps = train_until(model, x, mask, dice, target=0.9, max_steps=200, batch=8)
    assert best >= 0.9, f"held-out Dice {best:.3f} after {steps} steps"


def test_planning_imports_no_torch():
    code = ("import sys, archc; archc.plan('efficientnet3d_b0', spacing=(5, 0.7, 0.7), shape=(32, 256, 256), memory='11GiB', batch=2); "
            "print('torch' in sys.modules)")
    assert run_python(code).stdout.strip() == "False"
