"""RegNet X/Y by timm's names: each spec's `regnet:` section generates plain bottleneck rows whose network has exactly the
parameter count of timm's real module (meta device) and of tests/reference_residual.py, timm's feature levels and
its MACs (FlopCounterMode on timm's module); the names build and run in 1D and 3D."""

import pytest
import torch
from conftest import timm_parameter_count_equals
from reference_residual import TIMM

import archc
from archc.errors import SpecError

# and timm's *_tv names, the same five numbers with torchvision's rounding of the inner widths (regnet.rounding)
NAMES = [f"regnet{kind}_{size}" for kind in "xy" for size in ("002", "004", "006", "008", "016", "032")] + ["regnetx_004_tv", "regnety_008_tv"]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_features_equal_timms(name):
    plan, peer = timm_parameter_count_equals(name, TIMM[name]["params"])
    assert [(f.channels, f.reduction) for f in plan.features] == [(c, (r, r)) for c, r, _ in TIMM[name]["features"]]
    assert [(i["num_chs"], i["reduction"]) for i in peer.feature_info] == [(c, r) for c, r, _ in TIMM[name]["features"]]
    assert archc.analyze(plan).macs == TIMM[name]["macs"]  # FlopCounterMode / 2 on timm's module at its default input


def test_the_section_lowers_to_plain_rows():
    # timm regnety_032: widths 72, 216, 576, 1512, depths 2, 5, 13, 1, group width 24 (design table, timm's generate_regnet)
    plan = archc.lower("regnety_032")
    rows = [(s.blocks[0].out_channels, len(s.blocks), s.blocks[0].stride) for s in plan.stages]
    assert rows == [(72, 2, (2, 2)), (216, 5, (2, 2)), (576, 13, (2, 2)), (1512, 1, (2, 2))]


def test_regnet_and_stages_together_is_an_error(tmp_path):
    path = tmp_path / "both.yaml"
    path.write_text("name: both\nregnet: {w0: 24, wa: 36.44, wm: 2.49, depth: 13, group_width: 8}\nstages: [{block: mbconv}]\n")
    with pytest.raises(SpecError, match="give regnet or stages, not both"):
        archc.lower(str(path))


@pytest.mark.parametrize("name", ["regnetx_002", "regnety_002"])
def test_builds_and_runs_in_1d_and_3d(name):
    for dims, size in ((1, 33), (3, 17)):
        plan = archc.lower(name, dims=dims, in_channels=1, num_classes=2, resolution=size)
        model = archc.build(plan, seed=0).eval()
        assert archc.analyze(plan).params == sum(p.numel() for p in model.parameters())
        with torch.no_grad():
            assert model(torch.randn(1, 1, *(size,) * dims)).shape == (1, 2)


def test_regnety_block_order_and_squeeze_are_timms():
    # timm RegNet's Bottleneck: conv1, conv2 (grouped 3x3, stride), se (squeeze int(round(block input * 0.25))), conv3
    import timm

    peer = timm.create_model("regnety_002", pretrained=False).s2.b1
    block = archc.lower("regnety_002").stages[1].blocks[0]
    se = next(layer for layer in block.layers if layer.name == "se")
    assert [getattr(layer, "conv", layer.name) for layer in block.layers] == [n for n, _ in peer.named_children()][:4] == ["conv1", "conv2", "se", "conv3"]
    assert (se.channels, se.squeeze) == (peer.se.fc1.in_channels, peer.se.fc1.out_channels) == (56, 6)
    assert block.layers[1].groups == peer.conv2.conv.groups == 7
