"""ConvNeXt V1 and V2 by timm's names (atto ... base): timm's parameter counts and feature levels, built and run in 1D
and 3D; timm's weights give timm's outputs (conv MLP and GRN) and inflate into 3D. Pinned figures:
tests/reference_residual.py (timm 1.0.31's real modules), checked again here against the modules themselves."""

import pytest
import timm
import torch
from conftest import assert_same_outputs, timm_parameter_count_equals
from reference_residual import TIMM

import archc

NAMES = [name for name in TIMM if name.startswith("convnext")]


@pytest.mark.parametrize("name", NAMES)
def test_parameter_count_and_feature_levels_are_timms(name):
    plan, peer = timm_parameter_count_equals(name, TIMM[name]["params"])
    assert archc.analyze(plan).macs == TIMM[name]["macs"]  # FlopCounterMode's on timm's module at 224, halved
    assert plan.name == name and (3, *plan.resolution) == TIMM[name]["input_size"]
    assert [(f.channels, f.reduction) for f in plan.features] == [(c, (r, r)) for c, r, _ in TIMM[name]["features"]]
    assert [(f.channels, f.reduction[0]) for f in plan.features] == [(f["num_chs"], f["reduction"]) for f in peer.feature_info]


@pytest.mark.parametrize("name", NAMES)
@pytest.mark.parametrize("dims", [1, 3])
def test_every_name_lowers_in_1d_and_3d(name, dims):
    plan = archc.lower(name, dims=dims, in_channels=1, num_classes=2, resolution=64)
    report = archc.analyze(plan)
    assert plan.stem.units[0].kernel == (4,) * dims and report.part("stages.3." + str(len(plan.stages[3].blocks) - 1)).shape[1:] == (2,) * dims


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
@pytest.mark.parametrize("dims, size", [(1, 99), (3, 35)])
def test_atto_runs_in_1d_and_3d(name, dims, size):
    model = archc.load(name, dims=dims, in_channels=1, num_classes=2, resolution=size, seed=0).eval()
    with torch.no_grad():
        assert model(torch.randn(1, 1, *(size,) * dims)).shape == (1, 2)


def _timm_peer(name: str) -> torch.nn.Module:
    """timm's real module with seeded random weights where its initialisation is the identity or nearly nothing (layer
    scale 1e-6, GRN 0, norms 1 and 0), so that every block changes the output."""
    torch.manual_seed(0)
    peer = timm.create_model(name).eval()
    with torch.no_grad():
        for key, tensor in peer.state_dict().items():
            if tensor.ndim == 1:
                tensor.uniform_(0.5, 1.5) if key.endswith(("weight", "gamma")) else tensor.uniform_(-0.2, 0.2)
    return peer


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
def test_timm_weights_give_timms_outputs(name):
    peer = _timm_peer(name)
    model = archc.load(name, weights=peer.state_dict(), weights_from="timm", resolution=(97, 113)).eval()
    assert model.plan.norm.eps == 1e-6
    x = torch.randn(2, 3, 97, 113, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = peer(x)
        assert theirs.std() > 1e-2
        torch.testing.assert_close(model.set_fast_paths(False)(x), theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
def test_torchvision_weights_give_torchvisions_outputs():
    """torchvision's convnext_tiny (features.<i>, CNBlock's block.0/2/3/5, a (C, 1, 1) layer_scale, classifier.0/2): its
    parameter count and, with its weights, its outputs. The layer scales are drawn in [0.2, 1] (torchvision initialises
    them to 1e-6, which would hide every block behind its skip)."""
    import torchvision

    torch.manual_seed(0)
    peer = torchvision.models.convnext_tiny().eval()
    with torch.no_grad():
        for name, tensor in peer.named_parameters():
            if name.endswith("layer_scale"):
                tensor.uniform_(0.2, 1.0)
    model = archc.load("convnext_tiny", weights=peer.state_dict(), weights_from="torchvision").eval()
    assert archc.analyze(model.plan).params == sum(p.numel() for p in peer.parameters()) == TIMM["convnext_tiny"]["params"]
    assert_same_outputs(model, peer, (65, 67))


def test_linear_mlp_weights_import_into_1x1_convs():
    """timm's tiny and larger hold the MLP as nn.Linear ((4C, C) weights under the same keys): imported reshaped."""
    with torch.device("meta"):
        peer = timm.create_model("convnext_tiny")
    state = {key: torch.zeros(tensor.shape) for key, tensor in peer.state_dict().items()}
    assert state["stages.0.blocks.0.mlp.fc1.weight"].shape == (384, 96)
    model = archc.load("convnext_tiny", weights=state, weights_from="timm")
    assert model.state_dict()["stages.0.1.fc1.weight"].shape == (384, 96, 1, 1)


@pytest.mark.parametrize("name", ["convnext_atto", "convnextv2_atto"])
def test_timm_weights_inflate_into_3d(name):
    """A depth-constant volume through the inflated 3D network gives the 2D output: the 7x7 depthwise kernels
    centre-inflated, the even patchify and downsample kernels (no centre) mean-inflated."""
    peer = _timm_peer(name)
    volume = archc.load(name, dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=64).eval()
    assert "inflated 40 kernels from 2D to 3D (center; the 4 even ones, which have no middle slice, by mean)" in volume.archc_notes
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(volume.set_fast_paths(False)(x.unsqueeze(2).expand(2, 3, 32, 64, 64)), peer(x), atol=1e-4, rtol=1e-4)


def test_features_only_taps_timms_maps_and_the_network_scripts():
    """features_only gives timm's four levels (no stem level: stage 0 does not reduce again); TorchScript compiles the
    standalone norms, GRN and the norm head to the same output."""
    ours = archc.load("convnextv2_atto", features_only=True, resolution=64).feature_info
    with torch.device("meta"):
        theirs = timm.create_model("convnextv2_atto", features_only=True).feature_info
    assert ours.channels() == theirs.channels() and ours.reduction() == theirs.reduction()
    model = archc.load("convnextv2_atto", resolution=64, seed=0).eval().set_fast_paths(False)
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        torch.testing.assert_close(torch.jit.script(model)(x), model(x))
