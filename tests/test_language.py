"""The spec language beyond B0: block types, norms, anisotropy, padding, features, overrides, analysis."""

import json
import math

import jsonschema
import monai.networks.nets as monai_nets
import pytest
import torch
import yaml
from conftest import ROOT, module_params, output_shapes, run_archc, run_python, saved_for_backward
from reference_figures import TIMM_PARAMS, TORCHVISION_PARAMS

import archc
from archc.errors import SpecError
from archc.reference import json_schema_text, markdown

SPECS = sorted(p.stem for p in (ROOT / "specs").glob("*.yaml"))


# --------------------------------------------------------------------------- shipped specs

def test_efficientnetv2_s_parameter_count():
    # torchvision's efficientnet_v2_s, 2D, 3 in, 1000 classes.
    plan = archc.lower("efficientnetv2_s")
    assert module_params(plan) == archc.analyze(plan).params == TORCHVISION_PARAMS["efficientnet_v2_s"]
    assert [s.blocks[0].type for s in plan.stages] == ["fused_mbconv"] * 3 + ["mbconv"] * 3
    assert plan.head.conv.out_channels == 1280 and plan.norm.eps == 1e-3


def test_mobilenet_v2_parameter_count():
    # torchvision's mobilenet_v2 (width 1.0).
    plan = archc.lower("mobilenet_v2")
    assert module_params(plan) == archc.analyze(plan).params == TORCHVISION_PARAMS["mobilenet_v2"]
    assert all(b.se_channels == 0 and {u.activation for u in b.convs} == {"relu6", None} for b in plan.blocks)


def test_efficientnet3d_b0_equals_monai():
    plan = archc.lower("efficientnet3d_b0")
    with torch.device("meta"):
        peer = monai_nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=3, in_channels=1, num_classes=2)
    assert module_params(plan) == sum(p.numel() for p in peer.parameters())
    assert plan.stem.stride == (1, 2, 2) and plan.resolution == (64, 224, 224)
    assert archc.analyze(plan).rows[-3].shape == (320, 8, 7, 7) and not archc.analyze(plan).warnings


@pytest.mark.parametrize("name", SPECS)
def test_shipped_specs_validate_against_the_published_schema(name):
    schema = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    text = (ROOT / "specs" / f"{name}.yaml").read_text()
    assert text.startswith("# yaml-language-server: $schema=../docs/spec.schema.json\n")
    jsonschema.validate(yaml.safe_load(text), schema)
    archc.validate(name)


# Every shipped spec in every dimensionality it can take (the anisotropic 3D specs are 3D only: their per-axis
# strides name three axes, and lowering one to 2D is an error tested in test_lower).
SPEC_DIMS = [(name, dims) for name in SPECS for dims in ((3,) if name in ("efficientnet3d_b0", "unet3d_ct") else (1, 2, 3))]


@pytest.mark.parametrize("name, dims", SPEC_DIMS)
def test_analysis_equals_measurement_for_every_shipped_spec(name, dims):
    from torch.utils.flop_counter import FlopCounterMode

    spec = archc.read(name)
    resolution = 64 if dims < 3 else 32
    model = archc.load(spec, dims=dims, resolution=resolution, seed=0).eval()
    report = archc.analyze(model.plan)
    assert report.params == sum(p.numel() for p in model.parameters())
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(torch.randn(1, *report.input_shape))
    assert report.macs == pytest.approx(counter.get_total_flops() / 2, rel=0.01)
    plan = model.plan
    assert out.shape == ((1, plan.decoder.num_classes, *plan.resolution) if plan.decoder else (1, plan.head.num_classes))


# --------------------------------------------------------------------------- blocks, norms, anisotropy

MIXED = """
name: mixed
dims: 3
in_channels: 1
num_classes: 3
resolution: [8, 32, 32]
norm: {type: group, groups: 8}
stem: {channels: 16, kernel: [1, 3, 3], stride: [1, 2, 2]}
head: {channels: 64}
stages:
  - {block: fused_mbconv, expand: 1, channels: 16, repeats: 2, kernel: 3}
  - {block: fused_mbconv, expand: 4, channels: 24, repeats: 2, stride: [1, 2, 2], kernel: [1, 3, 3], se: 0.25}
  - {block: conv, channels: 32, stride: 2, kernel: 3, activation: relu}
  - {block: mbconv, expand: 4, channels: 32, repeats: 2, kernel: [3, 5, 5], se_gate: hardsigmoid, activation: hardswish}
"""


def test_fused_anisotropic_group_norm_network_runs_as_predicted():
    spec = archc.spec.parse_spec(MIXED, file="mixed.yaml")
    model = archc.load(spec, seed=0)
    report = archc.analyze(model.plan)
    x = torch.randn(2, 1, 8, 32, 32)
    shapes = output_shapes(model, [f"stages.{i}" for i in range(len(model.stages))], x)
    out = model(x)
    out.sum().backward()
    assert out.shape == (2, 3)
    assert list(shapes.values()) == [row.shape for row in report.rows[1:5]]
    assert list(shapes.values()) == [(16, 8, 16, 16), (24, 8, 8, 8), (32, 4, 4, 4), (32, 4, 4, 4)]
    assert report.params == sum(p.numel() for p in model.parameters())
    assert all(torch.isfinite(p.grad).all() for p in model.parameters())
    fused1, fused4, conv, mb = model.stages[0][0], model.stages[1][0], model.stages[2][0], model.stages[3][1]
    assert fused1.steps == ("conv_exp", "bn1", "act1", "se") and fused1.has_residual  # a single conv, 16 -> 16, and its SE
    assert fused4.conv_exp.kernel_size == (1, 3, 3) and fused4.conv_exp.stride == (1, 2, 2) and fused4.se.conv_reduce.out_channels == 4
    assert type(conv.act).__name__ == "ReLU" and type(conv.bn).__name__ == "GroupNorm"
    assert mb.conv_dw.kernel_size == (3, 5, 5) and type(mb.se.gate).__name__ == "Hardsigmoid" and type(mb.act1).__name__ == "Hardswish"


@pytest.mark.parametrize("norm, module", [("instance", "InstanceNorm2d"), ("layer", "ChannelLayerNorm"), ("group", "GroupNorm"), ("batch", "BatchNorm2d")])
def test_norm_types(norm, module):
    model = archc.load("efficientnet_b0", overrides={"norm.type": norm}, resolution=64, seed=0)
    from archc.emit.ops import NORMS

    norms = {type(m).__name__ for m in model.modules() if isinstance(m, NORMS)}
    assert norms == {module}
    out = model(torch.randn(2, 3, 64, 64))
    out.sum().backward()
    assert archc.analyze(model.plan).params == sum(p.numel() for p in model.parameters())


def test_layer_norm_normalises_channels_at_each_position():
    from archc.emit.ops import ChannelLayerNorm

    x = torch.randn(2, 8, 3, 4, 5)
    y = ChannelLayerNorm(8)(x)
    assert torch.allclose(y.mean(dim=1), torch.zeros(2, 3, 4, 5), atol=1e-5)
    assert torch.allclose(y, torch.nn.functional.layer_norm(x.movedim(1, -1), (8,)).movedim(-1, 1))


def test_residual_can_be_turned_off():
    spec = archc.spec.parse_spec("name: r\nstages: [{channels: 16, repeats: 2, residual: false}]\n")
    assert [b.residual for b in archc.lower(spec).blocks] == [False, False]


# --------------------------------------------------------------------------- padding

@pytest.mark.parametrize("size", [31, 32, 33])
def test_same_padding_follows_tf_at_any_input_size(size):
    spec = archc.spec.parse_spec("name: s\npadding: same\nstages: [{channels: 16, stride: 2, kernel: 5}, {channels: 24, stride: 2}]\n")
    model = archc.load(spec, resolution=size, seed=0).eval()
    stages = ["stages.0", "stages.1"]
    shapes = list(output_shapes(model, stages, torch.randn(1, 3, size, size)).values())
    expected = math.ceil(math.ceil(math.ceil(size / 2) / 2) / 2)  # TF "same": ceil(n / stride)
    assert shapes[-1] == (24, expected, expected)
    assert [r.shape for r in archc.analyze(model.plan).rows[1:3]] == shapes
    # The padding is computed from the input at run time, not fixed to the spec's resolution:
    shapes = list(output_shapes(model, stages, torch.randn(1, 3, size + 7, size + 7)).values())
    assert shapes[-1][1] == math.ceil((size + 7) / 8)


def test_same_padding_is_tf_padding():
    """TF pads the extra pixel after: a 3x3 stride-2 conv on a 4x4 input pads (0, 1)."""
    from archc.emit.ops import SAME_CONV

    conv = SAME_CONV[2](1, 1, 3, stride=2, bias=False)
    torch.nn.init.ones_(conv.weight)
    y = conv(torch.ones(1, 1, 4, 4))
    assert y[0, 0].tolist() == [[9.0, 6.0], [6.0, 4.0]]


# --------------------------------------------------------------------------- features

@pytest.mark.parametrize("dims, size", [(1, 64), (2, 64), (3, 32)])
def test_features_only(dims, size):
    model = archc.load("efficientnet_b0", dims=dims, resolution=size, features_only=True, seed=0)
    maps = model(torch.randn(2, 3, *(size,) * dims))
    info = model.feature_info
    assert [f["stage"] for f in info] == [0, 1, 2, 4, 6]
    assert [f["reduction_per_axis"] for f in info] == [(r,) * dims for r in (2, 4, 8, 16, 32)]
    assert [m.shape for m in maps] == [
        (2, f["channels"], *(size // f["reduction"],) * dims) for f in info
    ]
    assert not hasattr(model, "classifier")
    # The Plan says it is an encoder, so its analysis counts what the module holds (not the classifier's 5.3M).
    assert model.plan.output == "features" and archc.analyze(model.plan).params == sum(p.numel() for p in model.parameters())


def test_features_encoder_is_counted_and_guarded_as_built():
    """B0 without its head and classifier: the 1,693,160 parameters of head (412,160 + 2,560) and classifier
    (1,281,000) off 5,288,548 leave 3,595,388; the size guard tests that number."""
    encoder = TIMM_PARAMS["efficientnet_b0"] - (320 * 1280 + 2 * 1280) - (1280 * 1000 + 1000)
    plan = archc.lower("efficientnet_b0", features_only=True)
    assert archc.analyze(plan).params == module_params(plan) == encoder == 3_595_388
    with pytest.raises(archc.LoweringError, match=f"{encoder:,} parameters"):
        archc.load("efficientnet_b0", features_only=True, max_params=encoder - 1)
    result = run_archc("info", "efficientnet_b0", "--features-only", "--json")
    assert result.returncode == 0 and json.loads(result.stdout)["params"] == encoder


def test_anisotropic_feature_levels():
    levels = archc.lower("efficientnet3d_b0").features
    assert [(f.stage, f.channels, f.reduction) for f in levels] == [
        (0, 16, (1, 2, 2)), (1, 24, (1, 4, 4)), (2, 40, (2, 8, 8)), (4, 112, (4, 16, 16)), (6, 320, (8, 32, 32)),
    ]


# --------------------------------------------------------------------------- overrides

def test_overrides_change_the_model():
    plan = archc.lower("efficientnet_b0", overrides={"stages[3].se": "none", "norm.type": "group"})
    assert all(b.se_channels == 0 for b in plan.stages[3].blocks) and plan.stages[2].blocks[0].se_channels == 6  # untouched: 24 / 4
    assert plan.norm.type == "group"
    same = archc.lower("efficientnet_b0", overrides=["stages[3].se=none", "norm.type=group"])
    assert same == plan


@pytest.mark.parametrize(
    "override, message",
    [
        ("stages[3].stride=3", "--set stages[3].stride=3: stages[3].stride: got 3, expected 1 or 2"),
        ("stages[3].strde=1", "--set stages[3].strde=1: stages[3].strde: unknown key 'strde' (did you mean 'stride'?)"),
        ("norm.type=batchnorm", "--set norm.type=batchnorm: norm.type: got 'batchnorm', expected 'batch', 'group', 'instance' or 'layer'"),
        ("stages[9].se=0", "--set stages[9].se=0: stages[9]: stages has 7 rows"),
        ("norm={type: group, groups: 32}", "--set norm={type: group, groups: 32}: norm.groups: got 32, but it does not divide the 16 channels of stages.0.0"),
        ("stages[0].kernel=[3, 3, 3]", "--set stages[0].kernel=[3, 3, 3]: stages[0].kernel: got 3 values [3, 3, 3] for a 2D network"),
        ("stages.3.se=none", "override 'stages.3.se': 'stages.3.se' is not a field path (like stages[3].se or norm.type)"),
        ("stride", "--set stride: expected PATH=VALUE, like stages[3].se=none"),
        ("name=[unclosed", "--set name=[unclosed: invalid YAML"),
    ],
)
def test_invalid_override_names_itself(override, message):
    with pytest.raises(archc.ArchcError) as info:
        archc.lower("efficientnet_b0", overrides=[override])
    assert str(info.value).startswith(message)
    result = run_archc("validate", "efficientnet_b0", "--set", override)
    assert result.returncode == 1 and result.stderr.startswith(f"archc: error: {message}") and "Traceback" not in result.stderr


def test_python_override_is_named_as_such():
    with pytest.raises(SpecError, match=r"^overrides\['stem.stride'\]: stem.stride: got 3, expected 1 or 2"):
        archc.load("efficientnet_b0", overrides={"stem.stride": 3})


def test_overrides_survive_a_checkpoint(tmp_path):
    model = archc.load("efficientnet_b0", overrides={"norm.type": "group"}, resolution=32, seed=0, features_only=True)
    archc.save(model, tmp_path / "m.safetensors")
    restored = archc.load(str(tmp_path / "m.safetensors"))
    assert restored.plan == model.plan and restored.features_only


# --------------------------------------------------------------------------- static analysis

def test_collapsing_resolution_warns():
    report = archc.analyze(archc.lower("efficientnet_b0", dims=3, resolution=32))
    assert "stage 5: the feature map has shrunk to 1 on every axis before the last stage" in report.warnings
    assert "stage 2: the 4x4x4 input is smaller than the 5x5x5 kernel on axes 0, 1, 2" in report.warnings
    result = run_archc("info", "efficientnet_b0", "--dims", "3", "--resolution", "32")
    assert result.returncode == 0 and "warning" not in result.stdout  # stdout stays the table, for pipes
    assert "warning: stage 5: the feature map has shrunk to 1 on every axis before the last stage" in result.stderr.splitlines()
    quiet = run_archc("info", "efficientnet_b0", "--dims", "3", "--resolution", "32", "--quiet")
    assert quiet.returncode == 0 and quiet.stderr == "" and quiet.stdout == result.stdout


def test_stride_not_dividing_the_resolution_warns():
    """One warning for the cause (the input size), naming where it rounds and which sizes to use instead."""
    report = archc.analyze(archc.lower("efficientnet_b0", resolution=(100, 99)))
    # By hand: 99 is odd at the stem; 100 halves to 50, then 25 meets stage 2's stride; 13 and 7 meet stages 3 and 5'.
    assert report.warnings[0] == ("the 100x99 input is not a multiple of the total stride 32x32 on axes 0, 1, so stem, "
                                  "stage 2, stage 3, stage 5 round the size up; use a multiple (96 or 128)")
    assert [w for w in report.warnings if "stride" in w] == [report.warnings[0]]  # once, not once per conv
    assert not archc.analyze(archc.lower("efficientnet_b0")).warnings  # 224 divides cleanly
    # a size archc computed itself (from phi, or a preset's published size like B2's 260) draws no warning; one a person gave does
    scale = run_archc("scale", "efficientnet_b0", "--phi-range", "0:7")
    assert scale.returncode == 0 and "not a multiple of the total stride" not in scale.stderr
    assert not archc.analyze(archc.lower("efficientnet_b0", preset="b2")).warnings
    given = archc.analyze(archc.lower("efficientnet_b0", phi=1, resolution=258)).warnings
    assert given == ("the 258x258 input is not a multiple of the total stride 32x32 on axes 0, 1, so stage 1, stage 2, stage 3, stage 5 round the size up; use a multiple (256 or 288)",)


def test_receptive_field():
    rows = archc.analyze(archc.lower("efficientnet_b0")).rows
    # By hand: stem k3 (rf 3, jump 2); stage 1 dw k3 (3 + 2*2 = 7); stage 2 first dw k3 s2 (7 + 2*2 = 11, jump 4),
    # second dw k3 (11 + 2*4 = 19).
    assert [r.receptive_field for r in rows[:3]] == [(3, 3), (7, 7), (19, 19)]


@pytest.mark.parametrize("name, kwargs", [("efficientnet_b0", dict(resolution=64)), ("efficientnet_b0", dict(dims=3, resolution=64)),
                                           ("efficientnetv2_s", dict(resolution=64)), ("mobilenet_v2", dict(resolution=64)),
                                           ("efficientnet_b0", dict(resolution=64, overrides={"norm.type": "group"}))])
def test_activation_memory_matches_what_autograd_keeps(name, kwargs):
    model = archc.load(name, seed=0, **kwargs).train()
    x = torch.randn(1, model.plan.in_channels, *model.plan.resolution)
    kept, _ = saved_for_backward(model, x, exclude=[x])
    assert archc.analyze(model.plan).activations == pytest.approx(kept / 4, rel=0.05)  # float32 elements


def test_info_is_fast_and_torch_free():
    result = run_archc("info", "efficientnet_b0", "--phi", "10", "--dims", "3")
    assert result.returncode == 0
    assert "total" in result.stdout and "act fp32" in result.stdout

    code = "import sys, archc; archc.analyze(archc.lower('efficientnet_b0', phi=10, dims=3)); print('torch' in sys.modules)"
    assert run_python(code).stdout.strip() == "False"


# --------------------------------------------------------------------------- docs

def test_generated_docs_are_current():
    hint = "regenerate with: archc schema --markdown > docs/spec.md && archc schema > docs/spec.schema.json"
    assert (ROOT / "docs" / "spec.md").read_text() == markdown(), hint
    assert (ROOT / "docs" / "spec.schema.json").read_text() == json_schema_text(), hint


def test_schema_command():
    result = run_archc("schema")
    assert result.returncode == 0 and json.loads(result.stdout)["properties"]["stages"]["anyOf"]


@pytest.mark.parametrize("row", [
    "[mbconv, 6, 3, 3, 24, 2]",  # a stride of 3
    "[mbconv, 6, 3, 2, 24]",  # a short row
    "[mbconv, 6, 3, 2, 24, 2, 1]",  # a long row
    "[mbconv, 6, 3, 2, -24, 2]",  # negative channels
    "[mbcovn, 6, 3, 2, 24, 2]",  # an unknown block
])
def test_the_schema_types_the_rows_of_the_table_form(row):
    """Editors see the mistakes archc reports: each cell is typed by its column, and rows are as long as the columns."""
    schema = json.loads((ROOT / "docs" / "spec.schema.json").read_text())
    text = (ROOT / "specs" / "efficientnet_b0.yaml").read_text()
    jsonschema.validate(yaml.safe_load(text), schema)
    bad = text.replace("[mbconv, 6, 3, 2,  24, 2]", row)
    assert bad != text
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(yaml.safe_load(bad), schema)
    with pytest.raises(archc.SpecError, match=r"table\.yaml:32: stages"):  # archc refuses it too, at the row
        archc.spec.parse_spec(bad, "table.yaml")
