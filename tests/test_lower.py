import pytest
from conftest import B0, module_params
from reference_figures import B0_3D_PARAMS, PHI_PARAMS, PRESETS

import archc
from archc.errors import LoweringError, ScalingError


@pytest.mark.parametrize("preset", PRESETS)
def test_preset_parameter_counts(b0_spec, preset):
    params, resolution = PRESETS[preset]
    plan = archc.lower(b0_spec, preset=preset)
    assert module_params(plan) == params
    assert archc.analyze(plan).params == params
    assert plan.resolution == (resolution, resolution)


def test_blocks_per_stage(b0_spec):
    # reference-numbers.md: b0 [1,2,2,3,3,4,1] (16 blocks); b7 [4,7,7,10,10,13,4] (55 blocks).
    b0 = archc.lower(b0_spec, preset="b0")
    b7 = archc.lower(b0_spec, preset="b7")
    assert [len(s.blocks) for s in b0.stages] == [1, 2, 2, 3, 3, 4, 1] and len(b0.blocks) == 16
    assert [len(s.blocks) for s in b7.stages] == [4, 7, 7, 10, 10, 13, 4] and len(b7.blocks) == 55


@pytest.mark.parametrize("phi", PHI_PARAMS)
def test_compound_scaling_parameter_counts(b0_spec, phi):
    plan = archc.lower(b0_spec, phi=phi)
    assert module_params(plan) == PHI_PARAMS[phi]
    assert plan.resolution == ({1: 258, 2: 296, 3: 341, 4: 392}[phi],) * 2


def test_3d_b0_parameter_count(b0_spec):
    # b0, 3 in, 1000 classes, as MONAI builds it.
    assert module_params(archc.lower(b0_spec, dims=3)) == B0_3D_PARAMS


def test_plan_resolves_every_number(b0_spec):
    plan = archc.lower(b0_spec)
    first, second = plan.stages[1].blocks
    assert (first.path, first.in_channels, first.out_channels) == ("stages.1.0", 16, 24)
    assert [(u.conv, u.in_channels, u.out_channels, u.groups, u.activation) for u in first.convs] == [
        ("conv_pw", 16, 96, 1, "silu"), ("conv_dw", 96, 96, 96, "silu"), ("conv_pwl", 96, 24, 1, None)]  # expand 6, linear projection
    assert first.stride == (2, 2) and second.stride == (1, 1)
    assert first.se_channels == 4 and second.se_channels == 6  # a quarter of each block's input (16, 24)
    assert not first.residual and second.residual
    assert plan.stages[0].blocks[0].expand_ratio == 1 and first.expand_ratio == 6
    assert [u.conv for u in plan.stages[0].blocks[0].convs] == ["conv_dw", "conv_pwl"]  # expand ratio 1: no expand conv
    # Drop-path rate is linear in the global block index: 0.2 * i / 16.
    assert [b.drop_path for b in plan.blocks] == pytest.approx([0.2 * i / 16 for i in range(16)])
    assert plan.head.conv.out_channels == 1280 and plan.head.dropout == 0.2


def test_build_arguments_override_the_spec(b0_spec):
    plan = archc.lower(b0_spec, phi=2, dims=3, in_channels=1, num_classes=2)
    assert plan.dims == 3 and plan.in_channels == 1 and plan.head.num_classes == 2
    assert plan.resolution == (296, 296, 296)
    assert plan.stem.kernel == (3, 3, 3)
    assert archc.lower(b0_spec, resolution=(32, 64, 64), dims=3).resolution == (32, 64, 64)
    assert archc.lower(b0_spec, preset="b3", resolution=128).resolution == (128, 128)


def test_negative_phi_scales_down(b0_spec):
    small = archc.lower(b0_spec, phi=-1)
    assert small.resolution == (195, 195)  # round(224 / 1.15)
    assert module_params(small) < PRESETS["b0"][0]


def test_phi_and_preset_together_is_an_error(b0_spec):
    with pytest.raises(ScalingError, match="give phi or preset, not both"):
        archc.lower(b0_spec, phi=1, preset="b1")


def test_unknown_preset_names_the_available_ones(b0_spec):
    with pytest.raises(ScalingError) as info:
        archc.lower(b0_spec, preset="b9")
    assert str(info.value) == (
        f"{B0}:47: scaling.presets: unknown preset 'b9' (available: b0, b1, b2, b3, b4, b5, b6, b7, b8, l2)"
    )


def test_spec_default_scaling_applies_when_caller_gives_none():
    spec = archc.spec.parse_spec("name: s\nstages: [{channels: 16}]\nscaling: {phi: 1}\n")
    assert archc.lower(spec).scaling.phi == 1.0
    assert archc.lower(spec, phi=0).scaling.phi == 0.0


def test_per_axis_values_must_match_dims():
    spec = archc.spec.parse_spec("name: s\nresolution: [16, 64, 64]\nstages: [{channels: 16, stride: [1, 2, 2]}]\n", file="s.yaml")
    plan = archc.lower(spec, dims=3)
    assert plan.resolution == (16, 64, 64) and plan.stages[0].stride == (1, 2, 2)
    with pytest.raises(LoweringError) as info:
        archc.lower(spec, dims=2)
    assert str(info.value) == "s.yaml:2: resolution: got 3 values [16, 64, 64] for a 2D network; give one number or 2"


@pytest.mark.parametrize("kwargs, message, error", [(dict(dims=4), "dims must be 1, 2 or 3", archc.ArgumentError), (dict(in_channels=0), "in_channels", archc.ArgumentError),
                                                    (dict(resolution=(8, 8, 8)), "resolution has 3 values", LoweringError)])
def test_bad_build_arguments(b0_spec, kwargs, message, error):
    with pytest.raises(error, match=message):
        archc.lower(b0_spec, **kwargs)


def test_se_options():
    base = "name: s\nstages: [{channels: 16, expand: 6}, {channels: 24, expand: 6, se: none}]\n"
    spec = archc.spec.parse_spec(base + "se: {ratio: 0.25, relative_to: expanded}\n")
    first, second = archc.lower(spec).blocks
    assert first.se_channels == 32 * 6 // 4 and second.se_channels == 0
    spec = archc.spec.parse_spec(base + "se: {placement: none}\n")
    assert [b.se_channels for b in archc.lower(spec).blocks] == [0, 0]


FIXED = """name: fixed
stem: {channels: 32, scale: false}
head: {channels: 1280, scale: false}
stages:
  columns: [expand, channels, repeats, stride, scale_depth]
  rows:
    - [1, 16, 2, 1, false]
    - [6, 24, 2, 2, true]
    - [6, 40, 3, 2, true]
scaling:
  presets: {big: {width: 1.4, depth: 1.8}}
"""


def test_a_fixed_stem_and_depth_exempt_rows_stay_as_written():
    # timm's EfficientNet-Lite: fix_stem=True keeps the stem at 32; fix_first_last keeps a stage's repeats.
    from archc.lowering import block_count
    from archc.spec import parse_spec

    spec = parse_spec(FIXED)
    plan = archc.lower(spec, preset="big")
    assert plan.stem.out_channels == 32 and plan.head.conv.out_channels == 1280
    assert [len(s.blocks) for s in plan.stages] == [2, 4, 6]  # 2 (exempt), ceil(2 * 1.8), ceil(3 * 1.8)
    assert plan.stages[0].blocks[0].in_channels == 32 and plan.stages[0].blocks[0].out_channels == 24  # rows still scale in width
    assert block_count(spec, preset="big") == 12  # the count checked before building agrees
    scaled = archc.lower(parse_spec(FIXED.replace("scale: false}\nhead", "scale: true}\nhead")), preset="big")
    assert scaled.stem.out_channels == 48  # make_divisible(32 * 1.4)
