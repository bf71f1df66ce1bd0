"""MobileNetV1, MobileNetV3 (Large, Small) and LCNet by timm's names: built as timm builds them, its weights give
its outputs, and timm's 2D weights inflate into the 3D networks. Parameters, blocks and 1D/3D builds of every
member: tests/test_family_table.py."""

import pytest
from conftest import assert_inflation_keeps_2d, assert_same_outputs

import archc
from archc import ir

# One member of each shipped spec, with the spec's name.
BASES = {"mobilenetv3_large_100": "mobilenetv3_large", "mobilenetv3_small_100": "mobilenetv3_small",
         "lcnet_100": "lcnet_100", "mobilenetv1_100": "mobilenetv1_100"}


@pytest.mark.parametrize("name", [*BASES, "mobilenetv3_large_075"])
def test_timm_weights_give_timms_outputs(name, calibrated_peer):
    peer = calibrated_peer(name)
    model = archc.load(name, weights=peer.state_dict(), weights_from="timm", resolution=64).eval()
    assert_same_outputs(model, peer, 64)


def test_mobilenetv3_is_built_as_timm_builds_it():
    large, small = archc.lower("mobilenetv3_large_100"), archc.lower("mobilenetv3_small_075")
    # fractional expansions rounded to 8 (timm make_divisible): 80 * 2.5 -> 200, 80 * 2.3 -> 184
    assert [b.layers[0].out_channels for b in large.stages[3].blocks] == [240, 200, 184, 184]
    # SE from the expanded width, rounded to 8: 72 -> 24, 120 -> 32; ReLU inside, hard-sigmoid gate
    se = [layer for layer in large.stages[2].blocks[0].layers if isinstance(layer, ir.SqueezeExcite)][0]
    assert (se.channels, se.squeeze, se.activation, se.gate) == (72, 24, "relu", "hardsigmoid")
    # the stem stays 16 at 0.75 (12 rounds up); the last 1x1 conv scales (576 -> 432), the head (1024) does not
    assert small.stem.out_channels == 16 and small.stages[-1].blocks[0].out_channels == 432
    assert small.head.type == "efficient" and small.head.conv.out_channels == 1024 and not small.head.conv.norm
    assert archc.lower("mobilenetv1_100").head.conv is None


@pytest.mark.parametrize("name", BASES)
def test_timm_weights_inflate_into_3d(name, calibrated_peer):
    peer = calibrated_peer(name)
    volume = archc.load(name, dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=64).eval()
    assert_inflation_keeps_2d(volume, peer, 64, depth=8)
