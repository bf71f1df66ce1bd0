"""MobileNetV4 (Conv-S, -M, -L), FBNet-C, Single-Path NAS, MnasNet-A1 and EfficientNetV2-S (rw) by timm's names:
built as timm builds them, its weights give its outputs, and timm's 2D weights inflate into the 3D networks.
Parameters, blocks and 1D/3D builds: tests/test_family_table.py."""

import pytest
from conftest import assert_inflation_keeps_2d, assert_same_outputs

import archc
from archc import ir

# Each is the one member of its own shipped spec.
NAMES = ["mobilenetv4_conv_small", "mobilenetv4_conv_medium", "mobilenetv4_conv_large", "fbnetc_100", "spnasnet_100", "semnasnet_100", "efficientnetv2_rw_s"]


@pytest.mark.parametrize("name", NAMES)
def test_timm_weights_give_timms_outputs(name, calibrated_peer):
    peer = calibrated_peer(name)
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
def test_timm_weights_inflate_into_3d(name, calibrated_peer):
    peer = calibrated_peer(name)
    volume = archc.load(name, dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=64).eval()
    assert_inflation_keeps_2d(volume, peer, 64, depth=4)
