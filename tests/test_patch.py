"""The input patch chosen for a budget (archc/planning.py: choose_patch): nnU-Net v2's own loop, then a planned
network whose patch fits the budget and whose next larger patch does not."""

import ast
import math
import os
import types

import numpy as np
import pytest
from test_planning import nnunet_topology

import archc
from archc.budget import parse_bytes, training_cost
from archc.planning import choose_patch, initial_patch, pool_and_conv


def nnunet_patch(spacing, median_shape, voxel_limit):
    """The patch nnU-Net v2's ExperimentPlanner.get_plans_for_configuration chooses, compiled from its own source (its
    module imports torch and nnU-Net's full dependency set; the method needs numpy and get_pool_and_conv_props), with
    its VRAM estimate replaced by the voxel count: with its 3D reference values (560,000,000 at 8 GB for batch 2) and
    a target of 8 GB, a patch fits when it has at most ``voxel_limit`` voxels."""
    topology = nnunet_topology()
    import nnunetv2

    path = os.path.join(os.path.dirname(nnunetv2.__file__), "experiment_planning", "experiment_planners", "default_experiment_planner.py")
    tree = ast.parse(open(path).read())
    method = next(node for node in ast.walk(tree) if isinstance(node, ast.FunctionDef) and node.name == "get_plans_for_configuration")
    for arg in method.args.args:
        arg.annotation = None
    method.returns = None
    namespace = {"np": np, "deepcopy": __import__("copy").deepcopy, "Tuple": tuple, "get_pool_and_conv_props": topology.get_pool_and_conv_props,
                 "convert_dim_to_conv_op": lambda dims: types.SimpleNamespace(__module__="torch", __name__=f"Conv{dims}d"),
                 "get_matching_instancenorm": lambda op: types.SimpleNamespace(__module__="torch", __name__="InstanceNorm")}
    exec(compile(ast.Module([method], []), path, "exec"), namespace)
    reference = 560_000_000
    planner = types.SimpleNamespace(
        dataset_json={"channel_names": {"0": "CT"}, "labels": {"background": 0, "a": 1}},
        UNet_max_features_2d=512, UNet_max_features_3d=320, UNet_base_num_features=32, UNet_class=types.SimpleNamespace(__module__="x", __name__="UNet"),
        UNet_blocks_per_stage_encoder=(2,) * 14, UNet_blocks_per_stage_decoder=(2,) * 13, UNet_featuremap_min_edge_length=4,
        UNet_reference_val_3d=reference, UNet_reference_val_2d=reference, UNet_reference_val_corresp_GB=8, UNet_vram_target_GB=8,
        UNet_reference_val_corresp_bs_2d=2, UNet_reference_val_corresp_bs_3d=2, UNet_min_batch_size=2, max_dataset_covered=0.05,
        # fits (estimate <= reference) exactly when the patch has at most voxel_limit voxels
        static_estimate_VRAM_usage=lambda patch, *rest: math.prod(int(n) for n in patch) * reference / voxel_limit,
        determine_resampling=lambda: (len, {}, len, {}), determine_segmentation_softmax_export_fn=lambda: (len, {}),
        determine_normalization_scheme_and_whether_mask_is_used_for_norm=lambda: (None, None), preprocessor_name="p")
    plan = namespace["get_plans_for_configuration"](planner, spacing, median_shape, "d", 1e12, {})
    return tuple(int(n) for n in plan["patch_size"])


def nnunet_pad(spacing):
    """nnU-Net's divisors: the patch padded by its own topology, as its planner pads it."""
    def pad(patch):
        t = pool_and_conv(spacing, patch)
        return t.padded_patch, t.divisible_by
    return pad


# spacing, median shape, voxel limit: a thin-slab CT, an isotropic MRI, an 8x anisotropic scan, a 2D slide
CASES = [
    ((5.0, 0.7, 0.7), (32, 512, 512), 2_000_000),
    ((1.0, 1.0, 1.0), (180, 220, 200), 1_000_000),
    ((8.0, 1.0, 1.0), (24, 400, 300), 800_000),
    ((3.0, 0.8, 0.8), (90, 300, 320), 20_000_000),  # fits at once
    ((0.5, 0.5), (1200, 900), 300_000),
]


@pytest.mark.parametrize("spacing, median, limit", CASES)
def test_the_patch_equals_nnunet(spacing, median, limit):
    ours = choose_patch(spacing, median, nnunet_pad(spacing), lambda patch: math.prod(patch) <= limit)
    assert ours.patch == nnunet_patch(spacing, median, limit)


def test_the_patch_by_hand():
    """5 x 0.7 x 0.7 mm, median 32x512x512: 1/spacing scaled to 256^3 voxels is 69x493x493 (345.0 x 0.2, x 1/0.7),
    clipped to 32x493x493 and padded to nnU-Net's divisor 8x64x64 (3 and 6 pools): 32x512x512. Under 2,000,000
    voxels: the ratios to the median are all 1, so axis 2 goes first (the last on a tie), by 64 (the divisor of
    512 - 128 = 384, not 512's own 128), then axis 1; at 32x448x448 axis 0 (ratio 1 against 0.875) loses 4, the
    divisor of 32 - 8 = 24; and so on, each axis in turn, to 20x320x256 (1,638,400 voxels; 20x320x320 has 2,048,000)."""
    assert initial_patch((5.0, 0.7, 0.7), (32, 512, 512)) == (32, 493, 493)
    choice = choose_patch((5.0, 0.7, 0.7), (32, 512, 512), nnunet_pad((5.0, 0.7, 0.7)), lambda patch: math.prod(patch) <= 2_000_000)
    assert choice.tried[:4] == (((32, 512, 512), 2), ((32, 512, 448), 1), ((32, 448, 448), 0), ((28, 448, 448), 2))
    assert choice.tried[-1] == ((20, 320, 320), 2)
    assert choice.patch == (20, 320, 256)


def test_a_planned_patch_fits_and_the_next_larger_does_not():
    """efficientnet3d_b0 on 5 x 0.7 x 0.7 mm scans with a 2 GiB budget at batch 2: the chosen patch divides the total
    stride on every axis, fits at phi 0, and the patch tried just before it does not fit."""
    planned = archc.plan("efficientnet3d_b0", spacing=(5, 0.7, 0.7), shape=(32, 512, 512), memory="2GiB", batch=2)
    choice = planned.patch
    resolution = planned.spec.resolution
    assert resolution == choice.patch and choice.tried
    assert all(n % s == 0 for n, s in zip(resolution, planned.total_stride))

    def needed(patch):  # each candidate planned afresh (its strides depend on its size), at phi 0
        spec = archc.plan("efficientnet3d_b0", spacing=(5, 0.7, 0.7), shape=patch).spec
        assert spec.resolution == patch  # a patch tried is already padded to its own total stride
        return training_cost(archc.analyze(archc.lower(spec))).total(2)

    assert needed(choice.patch) <= parse_bytes("2GiB") < needed(choice.tried[-1][0])
    assert planned.reasons["resolution"].startswith(
        "patch chosen as nnU-Net v2 does: 1/spacing-proportional, 32x493x493 after clipping to the median shape 32x512x512, padded to the total "
        "stride; while the patch did not fit, the axis largest relative to the median shape lost one stride step (32x512x512 less axis 2, ")
    assert f": {'x'.join(map(str, resolution))} is the first that at phi 0 trains within 2.00 GiB at batch 2 (float32); " in planned.reasons["resolution"]
    assert planned.spec.scaling.phi is not None and planned.spec.scaling.gamma == 1  # then the largest phi at that patch
    assert planned.to_dict()["patch"]["patch"] == list(choice.patch)


def test_plan_json_shows_the_patch(capsys):
    """--macs alone also chooses the patch (96³ has 1.67G MACs at phi 0; 80³ is the first under 1G); --json carries the way there."""
    from archc.cli import main

    assert main(["plan", "efficientnet3d_b0", "--spacing", "1,1,1", "--shape", "96,96,96", "--macs", "1G", "--json"]) == 0
    out = __import__("json").loads(capsys.readouterr().out)
    patch = out["patch"]
    assert patch["start"] == [96, 96, 96] and patch["tried"][0] == {"patch": [96, 96, 96], "reduced_axis": 2}
    assert out["resolution"] == patch["patch"] == out["shape"] == [80, 80, 80]
    assert patch["fits"] == "at phi 0 has at most 1,000,000,000 MACs per sample"
