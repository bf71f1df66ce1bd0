"""Cross-checks against the peer implementations installed with the dev extra (MONAI, efficientnet-pytorch)."""

import efficientnet_pytorch
import monai.networks.nets as monai_nets
import pytest
import torch
from reference_figures import B0_3D_PARAMS

import archc


def _count(module: torch.nn.Module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.parametrize("dims, in_channels, num_classes", [(2, 3, 1000), (3, 1, 2), (3, 3, 1000), (1, 4, 7)])
@pytest.mark.parametrize("preset", ["b0", "b3"])
def test_parameter_count_equals_monai(b0_spec, preset, dims, in_channels, num_classes):
    with torch.device("meta"):
        peer = monai_nets.EfficientNetBN(
            f"efficientnet-{preset}", pretrained=False, spatial_dims=dims, in_channels=in_channels, num_classes=num_classes
        )
    plan = archc.lower(b0_spec, preset=preset, dims=dims, in_channels=in_channels, num_classes=num_classes)
    assert archc.analyze(plan).params == _count(peer)


def test_3d_b0_equals_monai_and_reference(b0_spec):
    with torch.device("meta"):
        peer = monai_nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=3)
    assert _count(peer) == B0_3D_PARAMS == archc.analyze(archc.lower(b0_spec, dims=3)).params


@pytest.mark.parametrize("preset", ["b0", "b4", "b7"])
def test_parameter_count_equals_efficientnet_pytorch(b0_spec, preset):
    with torch.device("meta"):
        peer = efficientnet_pytorch.EfficientNet.from_name(f"efficientnet-{preset}")
    assert archc.analyze(archc.lower(b0_spec, preset=preset)).params == _count(peer)
