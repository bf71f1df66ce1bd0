"""The pinned figures of tests/reference_residual.py still hold for the installed peers: a sample rebuilt from the real
modules on the meta device (a changed peer version shows here first, not as a failure of archc)."""

import pytest
import reference_residual as ref

torch = pytest.importorskip("torch")


def params(model) -> int:
    return sum(p.numel() for p in model.parameters())


@pytest.mark.parametrize("name", ["resnet50d", "seresnext50_32x4d", "convnextv2_atto", "regnety_008_tv"])
def test_timm_figures(name):
    timm = pytest.importorskip("timm")
    with torch.device("meta"):
        model = timm.create_model(name)
    entry = ref.TIMM[name]
    assert params(model) == entry["params"]
    assert tuple((f["num_chs"], f["reduction"], f["module"]) for f in model.feature_info) == entry["features"]
    assert (model.pretrained_cfg["first_conv"], model.pretrained_cfg["classifier"]) == (entry["first_conv"], entry["classifier"])


def test_monai_figures():
    nets = pytest.importorskip("monai.networks.nets")
    from monai.networks.nets.mednext import create_mednext
    from monai.networks.nets.resnet import ResNetFeatures

    with torch.device("meta"):
        assert params(nets.resnet10(spatial_dims=3, n_input_channels=1)) == ref.MONAI_RESNET[("resnet10", 3, 1)]
        assert params(ResNetFeatures("resnet18", pretrained=False, spatial_dims=3, in_channels=1)) == ref.MONAI_RESNET_FEATURES_3D_1CH["resnet18"]
        assert params(nets.SEResNext50(spatial_dims=3, in_channels=1)) == ref.MONAI_SENET[("SEResNext50", 3, 1)]
        assert params(create_mednext("S", spatial_dims=3, kernel_size=3)) == ref.MONAI_MEDNEXT[("S", 3, 3)]


def test_torchvision_figures():
    models = pytest.importorskip("torchvision.models")
    with torch.device("meta"):
        assert params(models.wide_resnet50_2(weights=None)) == ref.TORCHVISION["wide_resnet50_2"]["params"]


def test_peers_agree_where_they_build_the_same_network():
    """timm, torchvision and MONAI's SENet give the same counts for the same 2D network: one figure, three sources."""
    for name in ("resnet18", "resnet34", "resnet50", "resnet101", "resnet152", "resnext50_32x4d", "wide_resnet50_2", "resnext101_32x8d"):
        assert ref.TIMM.get(name, ref.TORCHVISION[name])["params"] == ref.TORCHVISION[name]["params"]
    assert ref.TIMM["seresnext50_32x4d"]["params"] == ref.MONAI_SENET[("SEResNext50", 2, 3)]
    assert ref.TIMM["seresnet50"]["params"] == ref.MONAI_SENET[("SEResNet50", 2, 3)]
