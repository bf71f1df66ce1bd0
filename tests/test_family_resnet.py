"""The ResNet family by timm's names (ResNet, ResNet-D, ResNet-T, ResNeXt, SE-ResNet/ResNeXt, Wide ResNet): each name's
parameter count equals timm's real module's (meta device) and the pinned figure of tests/reference_residual.py, its
feature levels are timm's feature_info, its MACs at the default input are FlopCounterMode's on timm's module; every
name builds and runs in 1D and 3D."""

import pytest
import torch
from conftest import timm_parameter_count_equals
from reference_residual import MONAI_RESNET, TIMM, TORCHVISION

import archc

NAMES = ["resnet10t", "resnet14t", "resnet18", "resnet18d", "resnet26", "resnet26d", "resnet34", "resnet34d", "resnet50", "resnet50d",
         "resnet101", "resnet101d", "resnet152", "resnet152d", "resnet200", "resnet200d", "resnext50_32x4d", "resnext101_32x8d",
         "seresnet50", "seresnext50_32x4d", "ecaresnet50d", "wide_resnet50_2"]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_features_equal_timms(name):
    plan, peer = timm_parameter_count_equals(name, TIMM[name]["params"])
    assert [(f.channels, f.reduction) for f in plan.features] == [(c, (r, r)) for c, r, _ in TIMM[name]["features"]]
    assert [(i["num_chs"], i["reduction"]) for i in peer.feature_info] == [(c, r) for c, r, _ in TIMM[name]["features"]]
    assert plan.resolution == TIMM[name]["input_size"][1:]
    assert archc.analyze(plan).macs == TIMM[name]["macs"]  # FlopCounterMode / 2 on timm's module at its default input
    if name in TORCHVISION:
        assert TORCHVISION[name]["params"] == TIMM[name]["params"]


@pytest.mark.parametrize("name", NAMES)
def test_every_name_builds_and_runs_in_1d_and_3d(name):
    for dims, size in ((1, 33), (3, 17)):
        plan = archc.lower(name, dims=dims, in_channels=1, num_classes=2, resolution=size)
        model = archc.build(plan, seed=0).eval()
        assert archc.analyze(plan).params == sum(p.numel() for p in model.parameters())
        if name in ("resnet18", "resnet50d", "seresnext50_32x4d", "ecaresnet50d"):  # one forward per block and stem kind (the rest: the same modules)
            with torch.no_grad():
                assert model(torch.randn(1, 1, *(size,) * dims)).shape == (1, 2)


MONAI_NAMES = ["resnet10", "resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnet200"]


@pytest.mark.parametrize("name", MONAI_NAMES)
def test_monai_layout_counts_equal_monais(name):
    """monai_<name>: MONAI's ResNet with its defaults (stride-1 stem, max-pool, shortcut B with a bias), in 3D and 2D, 3 and 1
    input channels, equal to MONAI's real module and to the pinned figure."""
    import monai.networks.nets as nets

    for dims, channels in ((3, 3), (3, 1), (2, 3)):
        plan = archc.lower(f"monai_{name}", dims=dims, in_channels=channels)
        with torch.device("meta"):
            peer = getattr(nets, name)(spatial_dims=dims, n_input_channels=channels)
        assert archc.analyze(plan).params == sum(p.numel() for p in peer.parameters()) == MONAI_RESNET[(name, dims, channels)]
