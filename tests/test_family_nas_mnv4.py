"""MobileNetV4 (Conv-S, -M, -L), FBNet-C, Single-Path NAS, MnasNet-A1 and EfficientNetV2-S (rw) by timm's names:
timm's parameter counts, its weights give its outputs, every network builds in 1D and 3D, and timm's 2D weights
inflate into the 3D networks."""

import pytest
import torch
from conftest import assert_inflation_keeps_2d, assert_same_outputs, timm_parameter_count_equals, timm_peer

import archc
from archc import ir

# reference-numbers.md (timm 1.0.31, 2D, 3 input channels, 1000 classes; timm.create_model(name)), with timm's
# default input size (pretrained_cfg["input_size"]). Each is the one member of its own shipped spec.
TIMM_PARAMS = {
    "mobilenetv4_conv_small": (3_774_024, 224), "mobilenetv4_conv_medium": (9_715_512, 256),
    "mobilenetv4_conv_large": (32_590_864, 384), "fbnetc_100": (5_572_200, 224), "spnasnet_100": (4_421_616, 224),
    "semnasnet_100": (3_887_038, 224), "efficientnetv2_rw_s": (23_941_296, 288),
}
NAMES = list(TIMM_PARAMS)


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_equals_timms(name):
    params, size = TIMM_PARAMS[name]
    plan, peer = timm_parameter_count_equals(name, params)
    assert plan.resolution == (size, size) == peer.pretrained_cfg["input_size"][1:]
    assert plan.name == name


@pytest.mark.parametrize("name", NAMES)
def test_timm_weights_give_timms_outputs(name):
    peer = timm_peer(name, 64)
    model = archc.load(name, weights=peer.state_dict(), weights_from="timm", resolution=64).eval()
    assert_same_outputs(model, peer, 64)


def _convs(block):
    return [(u.conv, u.kernel[0], u.stride[0], u.out_channels, u.activation) for u in block.convs]


def test_mobilenetv4_is_built_as_timm_builds_it():
    small, medium = archc.lower("mobilenetv4_conv_small"), archc.lower("mobilenetv4_conv_medium")
    # small: plain convs first (no skip); ExtraDW: a depthwise conv without activation before the expansion,
    # the stride on the middle one; ConvNext-like (no middle conv): the stride would go to the first
    assert [b.type for b in small.stages[0].blocks] == ["conv", "conv"] and not small.stages[0].blocks[1].residual
    assert _convs(small.stages[2].blocks[0]) == [("conv_dw_start", 5, 1, 64, None), ("conv_pw", 1, 1, 192, "relu"),
                                                 ("conv_dw", 5, 2, 192, "relu"), ("conv_pwl", 1, 1, 96, None)]
    assert [u.conv for u in small.stages[2].blocks[-1].convs] == ["conv_dw_start", "conv_pw", "conv_pwl"]
    assert [u.conv for u in medium.stages[2].blocks[-2].convs] == ["conv_pw", "conv_pwl"]  # FFN
    # a fused inverted bottleneck first (medium, large); no SE and no layer scale anywhere
    assert _convs(medium.stages[0].blocks[0]) == [("conv_exp", 3, 2, 128, "relu"), ("conv_pwl", 1, 1, 48, None)]
    for plan in (small, medium):
        assert not any(isinstance(layer, (ir.SqueezeExcite, ir.LayerScale)) for b in plan.blocks for layer in b.layers)
        # a 1x1 conv to 960 ends the stages; the head's conv (1280, no bias) runs after pooling, with a norm
        assert plan.stages[-1].blocks[0].out_channels == plan.head.in_channels == 960
        assert plan.head.type == "efficient" and plan.head.conv.norm and plan.head.conv.out_channels == 1280
        assert not plan.head.conv.unit.bias and plan.head.conv.activation == "relu"
    model = archc.load("mobilenetv4_conv_small", resolution=64, seed=0)
    assert (model.num_features, model.head_hidden_size) == (960, 1280)


def test_nas_networks_are_built_as_timm_builds_them():
    fbnet, rw = archc.lower("fbnetc_100"), archc.lower("efficientnetv2_rw_s")
    # FBNet's expansion-1 blocks keep their 1x1 expansion (timm ir at e1): 24 -> 24 -> 24
    assert [u.conv for u in fbnet.stages[1].blocks[1].convs] == ["conv_pw", "conv_dw", "conv_pwl"]
    assert fbnet.stages[1].blocks[1].convs[0].out_channels == 24 and fbnet.stages[1].blocks[1].residual
    assert fbnet.head.conv.out_channels == 1984
    # EfficientNetV2-rw: a full Fused-MBConv at expansion 1 with a skip; 272 channels last; head 1792
    first = rw.stages[0].blocks[0]
    assert _convs(first) == [("conv_exp", 3, 1, 24, "silu"), ("conv_pwl", 1, 1, 24, None)] and first.residual
    assert rw.stages[-1].blocks[-1].out_channels == 272 and rw.head.conv.out_channels == 1792
    # MnasNet-A1: SE on a quarter of the block's input, ReLU inside, sigmoid gate
    se = [layer for layer in archc.lower("semnasnet_100").stages[2].blocks[0].layers if isinstance(layer, ir.SqueezeExcite)]
    assert [(s.channels, s.squeeze, s.activation, s.gate) for s in se] == [(72, 6, "relu", "sigmoid")]


@pytest.mark.parametrize("name", NAMES)
def test_every_network_lowers_in_1d_and_3d(name):
    for dims in (1, 3):
        plan = archc.lower(name, dims=dims, resolution=32)
        assert plan.dims == dims and archc.analyze(plan).params > 0


@pytest.mark.parametrize("name", NAMES)
def test_each_network_runs_in_3d(name):
    model = archc.load(name, dims=3, in_channels=1, num_classes=2, resolution=32, seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, 32, 32, 32)).shape == (1, 2)


@pytest.mark.parametrize("name", NAMES)
def test_timm_weights_inflate_into_3d(name):
    peer = timm_peer(name, 64)
    volume = archc.load(name, dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=64).eval()
    assert_inflation_keeps_2d(volume, peer, 64, depth=4)
