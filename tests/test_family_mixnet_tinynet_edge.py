"""MixNet, TinyNet and EfficientNet-EdgeTPU by timm's names: the same parameter counts and blocks as timm's real
modules, timm's weights give timm's outputs (mixed-kernel and split pointwise convs, fused blocks), every member
lowers in 1D and 3D, and centre-inflated 3D models reproduce the 2D ones on volumes constant along depth."""

import pytest
import torch
from conftest import assert_inflation_keeps_2d, assert_same_outputs, module_params, timm_parameter_count_equals, timm_peer

import archc

# reference-numbers.md ("The MBConv family in timm 1.0.31"): timm.create_model(name), 2D, 3 input channels,
# 1000 classes; the input sizes are timm's default_cfg ones.
TIMM_PARAMS = {
    "mixnet_s": (4_134_606, 224), "mixnet_m": (5_014_382, 224), "mixnet_l": (7_329_252, 224), "mixnet_xl": (11_896_768, 224),
    "tinynet_a": (6_187_972, 192), "tinynet_b": (3_730_562, 188), "tinynet_c": (2_457_234, 184), "tinynet_d": (2_338_446, 152),
    "tinynet_e": (2_042_972, 106),
    "efficientnet_es": (5_438_392, 224), "efficientnet_em": (6_899_496, 240), "efficientnet_el": (10_589_712, 300),
}
# One network per shipped spec: the spec's base (its own name).
BASES = ["mixnet_s", "mixnet_m", "tinynet_a", "efficientnet_es"]


@pytest.fixture(autouse=True)
def one_thread():
    """Small inputs run faster on one thread than on threads that wait for each other."""
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


_PEERS: dict = {}


def calibrated_peer(name: str):
    """timm's module with random weights and batch-norm statistics of random data (shared by the tests below)."""
    if name not in _PEERS:
        _PEERS[name] = timm_peer(name, 64)
    return _PEERS[name]


@pytest.mark.parametrize("name", TIMM_PARAMS)
def test_parameter_count_and_blocks_equal_timms(name):
    params, resolution = TIMM_PARAMS[name]
    plan, peer = timm_parameter_count_equals(name, params)
    assert plan.name == name and plan.resolution == (resolution,) * 2 == peer.pretrained_cfg["input_size"][1:]
    assert [len(stage.blocks) for stage in plan.stages] == [len(stage) for stage in peer.blocks]
    assert plan.stem.out_channels == peer.conv_stem.out_channels and plan.head.conv.out_channels == peer.conv_head.out_channels


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
def test_timm_weights_give_timms_outputs(name):
    peer = calibrated_peer(name)
    theirs = peer.state_dict()
    model = archc.load(name, weights=theirs, weights_from="timm", resolution=64).eval()
    ours = model.state_dict()
    assert len(ours) == len(theirs)
    for timm_key, archc_key in KEYS.get(name, []):
        assert torch.equal(ours[archc_key], theirs[timm_key])
        assert timm_key not in SHAPES or tuple(theirs[timm_key].shape) == SHAPES[timm_key]
    assert_same_outputs(model, peer, 64)


@pytest.mark.parametrize("name", TIMM_PARAMS)
def test_every_member_lowers_in_1d_and_3d(name):
    counts = {}
    for dims in (1, 3):
        plan = archc.lower(name, dims=dims, resolution=32)
        report = archc.analyze(plan)
        assert plan.dims == dims and report.params == module_params(plan)
        assert all(len(u.kernel) == dims for b in plan.blocks for u in b.convs)
        counts[dims] = report.params
    assert counts[1] < TIMM_PARAMS[name][0] < counts[3]  # k becomes k^dims; 1x1 convs, norms and the classifier stay


@pytest.mark.parametrize("name", BASES)
def test_builds_and_runs_in_3d(name):
    model = archc.load(name, dims=3, in_channels=1, num_classes=2, resolution=32, seed=0).eval()
    with torch.no_grad():
        out = model(torch.randn(1, 1, 32, 32, 32, generator=torch.Generator().manual_seed(0)))
    assert out.shape == (1, 2) and torch.isfinite(out).all()


@pytest.mark.parametrize("name", BASES)
def test_centre_inflated_timm_weights_reproduce_2d_on_depth_constant_volumes(name):
    peer = calibrated_peer(name)
    volume = archc.load(name, dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=(8, 64, 64)).eval()
    assert_inflation_keeps_2d(volume, peer, 64, depth=8, batch=1, seed=2)
