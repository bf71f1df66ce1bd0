"""MixNet, TinyNet and EfficientNet-EdgeTPU by timm's names: depth rounding and fixed widths as timm's, timm's
weights give timm's outputs (mixed-kernel and split pointwise convs, fused blocks), and centre-inflated 3D models
reproduce the 2D ones on volumes constant along depth. Parameters, blocks and 1D/3D builds: tests/test_family_table.py."""

import pytest
import torch
from conftest import assert_inflation_keeps_2d, assert_same_outputs

import archc

# One network per shipped spec: the spec's base (its own name).
BASES = ["mixnet_s", "mixnet_m", "tinynet_a", "efficientnet_es"]


pytestmark = pytest.mark.usefixtures("one_thread")


def test_depth_rounding_and_fixed_widths_as_timm():
    # timm _gen_mixnet_m and _gen_tinynet: depth_trunc='round', the extra blocks to a stage's last block string.
    assert [len(s.blocks) for s in archc.lower("mixnet_xl").stages] == [1, 2, 5, 5, 5, 5]
    assert [len(s.blocks) for s in archc.lower("tinynet_d").stages] == [1, 1, 1, 2, 2, 3, 1]
    # TinyNet: stem fixed at 32, head max(1280, scaled); EdgeTPU-L scales both (40, 1536); MixNet's head stays 1536.
    tiny_e = archc.lower("tinynet_e")
    assert tiny_e.stem.out_channels == 32 and tiny_e.head.conv.out_channels == 1280
    assert tiny_e.stages[-1].blocks[-1].out_channels == 160
    el = archc.lower("efficientnet_el")
    assert (el.stem.out_channels, el.head.conv.out_channels) == (40, 1536)
    assert archc.lower("mixnet_xl").head.conv.out_channels == 1536


# timm keys whose tensors must land in archc's (timm key, archc key): MixConv parts (conv_dw.i), split 1x1 convs
# (conv_pw.i, conv_pwl.i), the separable first block, the EdgeTPU's fused blocks (conv_exp) and their fc24 width.
KEYS = {
    "mixnet_s": [("blocks.1.0.conv_pw.1.weight", "stages.1.0.conv_pw.1.weight"),
                 ("blocks.1.0.conv_pwl.1.weight", "stages.1.0.conv_pwl.1.weight"),
                 ("blocks.2.0.conv_dw.2.weight", "stages.2.0.conv_dw.2.weight"),
                 ("blocks.5.0.conv_dw.4.weight", "stages.5.0.conv_dw.4.weight"),
                 ("blocks.0.0.conv_pw.weight", "stages.0.0.conv_pwl.weight")],
    "mixnet_m": [("blocks.1.0.conv_dw.2.weight", "stages.1.0.conv_dw.2.weight"),
                 ("blocks.4.1.conv_pw.1.weight", "stages.4.1.conv_pw.1.weight"),
                 ("blocks.5.3.conv_pwl.1.weight", "stages.5.3.conv_pwl.1.weight"),
                 ("blocks.4.0.conv_dw.weight", "stages.4.0.conv_dw.weight")],
    "tinynet_a": [("blocks.0.0.se.conv_reduce.weight", "stages.0.0.se.conv_reduce.weight"),
                  ("blocks.0.0.conv_pw.weight", "stages.0.0.conv_pwl.weight")],
    "efficientnet_es": [("blocks.0.0.conv_exp.weight", "stages.0.0.conv_exp.weight"),
                        ("blocks.2.3.conv_pwl.weight", "stages.2.3.conv_pwl.weight"),
                        ("blocks.3.0.conv_pw.weight", "stages.3.0.conv_pw.weight")],
    "efficientnet_el": [("blocks.0.1.conv_exp.weight", "stages.0.1.conv_exp.weight")],
}
SHAPES = {"blocks.2.0.conv_dw.2.weight": (48, 1, 7, 7), "blocks.5.0.conv_dw.4.weight": (144, 1, 11, 11),
          "blocks.1.0.conv_pw.1.weight": (48, 8, 1, 1), "blocks.0.0.conv_exp.weight": (96, 32, 3, 3),
          "blocks.0.1.conv_exp.weight": (128, 32, 3, 3)}


# The bases, and scaled members whose widths move timm's fc24 (el: 32), or whose depth rounding adds blocks (xl, e).
@pytest.mark.parametrize("name", BASES + ["mixnet_xl", "tinynet_e", "efficientnet_el"])
def test_timm_weights_give_timms_outputs(name, calibrated_peer):
    peer = calibrated_peer(name)
    theirs = peer.state_dict()
    model = archc.load(name, weights=theirs, weights_from="timm", resolution=64).eval()
    ours = model.state_dict()
    assert len(ours) == len(theirs)
    for timm_key, archc_key in KEYS.get(name, []):
        assert torch.equal(ours[archc_key], theirs[timm_key])
        assert timm_key not in SHAPES or tuple(theirs[timm_key].shape) == SHAPES[timm_key]
    assert_same_outputs(model, peer, 64)


@pytest.mark.parametrize("name", BASES)
def test_centre_inflated_timm_weights_reproduce_2d_on_depth_constant_volumes(name, calibrated_peer):
    peer = calibrated_peer(name)
    volume = archc.load(name, dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=(8, 64, 64)).eval()
    assert_inflation_keeps_2d(volume, peer, 64, depth=8, batch=1, seed=2)
