"""The spec language of the MBConv family (ds/dsa/uib blocks, stages of several rows, mixed kernels, split 1x1
convs, group size, expand_from, expand_conv, skip per row, SE rounding, efficient and pool heads, layer scale):
the Plan's figures equal the emitted module's, BN folding keeps outputs, depth is shared out as timm does, and
misuse is a located one-line error."""

import json

import pytest
import timm
import torch
from conftest import FIXTURES, assert_same_outputs, output_shapes, timm_peer
from timm.models._efficientnet_builder import _scale_stage_depth
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc.emit.network import fuse_norms
from archc.spec import parse_spec

FEATURES = FIXTURES / "family_features.yaml"


@pytest.mark.parametrize("dims, resolution", [(1, 96), (2, 64), (3, 32)])
def test_every_block_kind_reports_what_the_module_has(dims, resolution):
    model = archc.load(FEATURES, dims=dims, resolution=resolution, seed=0).eval()
    report = archc.analyze(model.plan)
    assert report.params == sum(p.numel() for p in model.parameters())
    x = torch.randn(1, *report.input_shape)
    counter = FlopCounterMode(display=False)
    with counter, torch.no_grad():
        out = model(x)
    assert report.macs == pytest.approx(counter.get_total_flops() / 2, rel=0.01)
    paths = ["stem", *(f"stages.{i}" for i in range(len(model.stages)))]
    assert {path.removeprefix("stages."): shape for path, shape in output_shapes(model, paths, x).items()} == {
        row.name: row.shape for row in report.rows if row.name in {p.removeprefix("stages.") for p in paths}}
    assert report.rows[-1].shape == tuple(out.shape[1:])


def test_the_layer_report_lists_each_part_of_a_mixed_conv():
    report = archc.analyze(archc.lower(FEATURES))
    parts = [layer for layer in report.layers if layer.path.startswith("stages.1.0.conv_dw.")]
    # 72 channels (16 * 4.5) split 24/24/24 over kernels 3, 5 and 7 (timm _split_channels)
    assert [(p.path, p.in_channels, p.kernel, p.groups) for p in parts] == [
        ("stages.1.0.conv_dw.0", 24, (3, 3), 24), ("stages.1.0.conv_dw.1", 24, (5, 5), 24), ("stages.1.0.conv_dw.2", 24, (7, 7), 24)]
    model = archc.load(FEATURES, seed=0)
    modules = dict(model.named_modules())
    assert all(modules[p.path].kernel_size == p.kernel and modules[p.path].groups == p.groups for p in parts)
    assert report.layer("stages.5.0.layer_scale").params == 40


def test_folding_norms_keeps_outputs_of_mixed_and_split_convs():
    model = archc.load(FEATURES, seed=0)
    with torch.random.fork_rng():  # statistics away from 0 and 1, so a wrong slice of them shows
        torch.manual_seed(0)
        for module in model.modules():
            if isinstance(module, torch.nn.BatchNorm2d):
                module.running_mean.uniform_(-1, 1)
                module.running_var.uniform_(0.5, 2)
                module.weight.data.uniform_(0.5, 1.5)
    model.eval()
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        plain = model(x)
        fused = fuse_norms(model)(x)
    torch.testing.assert_close(fused, plain, atol=1e-4, rtol=1e-4)
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in model.stages[1][0].modules())


@pytest.mark.parametrize("repeats, depth, rounding", [
    ([1, 1, 2], 1.2, "ceil"), ([1, 1, 2], 1.4, "round"), ([1, 3], 0.5, "round"), ([2, 2, 1], 1.8, "ceil"), ([1, 4, 1], 0.33, "round")])
def test_a_stage_of_several_rows_is_deepened_as_timm_does(repeats, depth, rounding):
    # row i expands i + 1 times, so each block tells which row it came from
    rows = [{"block": "mbconv", "expand": i + 1, "channels": 16, "repeats": r, "continues": i > 0} for i, r in enumerate(repeats)]
    text = json.dumps({"name": "s", "stages": rows, "scaling": {"depth_rounding": rounding, "presets": {"d": {"width": 1.0, "depth": depth}}}})
    plan = archc.lower(parse_spec(text), preset="d")
    theirs = _scale_stage_depth([{"row": i} for i in range(len(repeats))], repeats, depth, rounding)  # timm's own function
    assert len(plan.stages) == 1
    assert [block.expand_ratio - 1 for block in plan.blocks] == [block["row"] for block in theirs]


MISUSE = [
    ({"stages[0].kernel": [3, 5]}, "stages[0].kernel: got [3, 5], [3, 5] is ambiguous: write one size per axis (2D: height, width), like 3x5, "
                                   "for one kernel, or mixed_kernels: [3, 5] for depthwise kernels over channel groups (MixNet)"),
    ({"stages[0].mixed_kernels": [3, 5]}, "stages[0]: give kernel or mixed_kernels, not both"),
    ({"stages[0].block": "fused_mbconv", "stages[0].mixed_kernels": [3, 5], "stages[0].kernel": None},
     "stages[0]: mixed_kernels needs a depthwise block (mbconv, ds or dsa), not fused_mbconv"),
    ({"stages[0].start_kernel": 3}, "stages[0]: start_kernel does not apply to a mbconv block (only to uib)"),
    ({"stages[0].block": "ds", "stages[0].expand": 4}, "stages[0]: a ds block has no expansion: expand must be 1 (or use mbconv)"),
    ({"stages[0].kernel": None}, "stages[0]: kernel: a mbconv block needs a kernel size (null means no middle depthwise conv, for uib or downsample only)"),
    ({"stages[0].continues": True}, "stages[0].continues: the first row has no stage above to continue"),
    ({"stages[0].block": "uib", "stages[0].kernel": None, "stages[0].stride": 2},
     "stages[0]: a uib block without depthwise convs (kernel and start_kernel null) cannot have a stride"),
    ({"head.scale": "down"}, "head.scale: got 'down', expected True, False or 'up'"),
]


@pytest.mark.parametrize("overrides, message", MISUSE)
def test_misuse_is_a_located_error(overrides, message):
    with pytest.raises(archc.ArchcError) as info:
        archc.lower("efficientnet_b0", overrides=overrides)
    assert message in str(info.value).splitlines()[0]


def test_a_group_size_that_does_not_divide_is_a_lowering_error():
    with pytest.raises(archc.ArchcError, match=r"stages\[1\]\.group_size: got 5, but 16 input channels in groups of 5"):
        archc.lower("efficientnet_b0", overrides={"stages[1].block": "conv", "stages[1].expand": 1, "stages[1].group_size": 5})


def test_a_kernel_written_per_axis_with_x_is_one_kernel():
    plan = archc.lower("efficientnet_b0", overrides={"stages[1].kernel": "3x5"})
    assert plan.stages[1].blocks[0].kernel == (3, 5)
    assert archc.lower("efficientnet3d_b0", overrides={"stages[1].kernel": [1, 3, 3]}).stages[1].blocks[0].kernel == (1, 3, 3)


def test_importing_reports_each_convention_it_applied_or_could_not():
    """timm's weights were trained with symmetric padding and eps 1e-5: a spec that says otherwise is changed and
    told so, and a user's own override is kept and told so, never replaced in silence."""
    peer = timm.create_model("efficientnet_b0")
    applied = archc.load("mobilenet_v2", weights=timm.create_model("mobilenetv2_100").state_dict(), weights_from="timm_tf")
    assert applied.archc_notes == ("padding: same instead of the spec's symmetric, as timm_tf's weights were trained",
                                   "norm.eps: 0.001 instead of the spec's 1e-05, as timm_tf's weights were trained")
    kept = archc.load("efficientnet_b0", overrides=["padding=same", "norm.eps=1e-5"], weights=peer.state_dict(), weights_from="timm")
    assert kept.plan.padding == "same"
    assert kept.archc_notes[0] == ("padding: kept same from the overrides, though timm's weights were trained with symmetric: "
                                   "outputs will differ from the source's")
    assert archc.load("efficientnet_b0", overrides={"norm.eps": 1e-5}, weights=peer.state_dict(), weights_from="timm").archc_notes == ()


def test_diagrams_name_the_new_blocks():
    dot = archc.render(FEATURES, detail="layer").source
    assert "mixed depthwise k3,5,7 s2 72→72" in dot
    assert "2 grouped convs k1,1" in dot
    assert "head: global average pool → 1×1 conv 64→96 with bias, hardswish" in dot
    assert "layer scale ×1e-05" in dot
    stage = archc.render(FEATURES, detail="stage").source
    assert "stage 1: MBConv4.5 k3,5,7 + MBConv3.67 k3 ×3" in stage and "stage 5: UIB4 + UIB2 k5/1 ×3" in stage


def test_the_zoo_page_is_current():
    """docs/zoo.md lists every shipped name with the figures archc computes now."""
    import importlib.util

    from conftest import ROOT

    spec = importlib.util.spec_from_file_location("zoo", ROOT / "docs" / "zoo.py")
    zoo = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(zoo)
    assert (ROOT / "docs" / "zoo.md").read_text() == zoo.page(), "regenerate with: python docs/zoo.py"
    listed = {line.split("`")[1] for line in zoo.rows()}
    assert set(archc.api.shipped_aliases()) | set(archc.builtin_specs()) == listed


@pytest.mark.parametrize("theirs, ours", [("tf_mixnet_s", "mixnet_s"), ("tf_mobilenetv3_large_100", "mobilenetv3_large_100"),
                                          ("tf_efficientnet_es", "efficientnet_es"), ("tf_efficientnet_lite0", "efficientnet_lite0")])
def test_tf_ported_weights_give_timms_outputs_with_same_padding(theirs, ours):
    """timm's tf_ models pad as TF does ("same", asymmetric at odd sizes, per part of a mixed conv) with eps 1e-3:
    weights_from="timm_tf" applies both, and at an odd input size the outputs are timm's."""
    peer = timm_peer(theirs, 67)
    model = archc.load(ours, weights=peer.state_dict(), weights_from="timm_tf", resolution=67).eval()
    assert model.plan.padding == "same" and model.plan.norm.eps == 1e-3
    assert_same_outputs(model, peer, 67)


@pytest.mark.parametrize("name, args", [("mobilenetv3_small_100", dict(resolution=65)), ("mobilenetv4_conv_small", dict(dims=3, in_channels=1, resolution=33)),
                                        ("mixnet_s", dict(dims=1, resolution=71))])
def test_family_members_become_unets_of_any_size(name, args):
    """A U-Net over family encoders, including those whose stem map is a level of its own (its skip comes from the stem)."""
    model = archc.load(name, overrides={"decoder": {"type": "unet", "width": 8}}, num_classes=2, seed=0, **args).eval()
    report = archc.analyze(model.plan)
    assert report.params == sum(p.numel() for p in model.parameters())
    with torch.no_grad():
        assert model(torch.randn(1, *report.input_shape)).shape == (1, 2, *report.input_shape[1:])
