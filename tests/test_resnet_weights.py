"""timm's and torchvision's ResNet state dicts import into the shipped ResNet specs with the peer's outputs (random
weights, batch norms calibrated on random images, an odd input size), and timm's 2D weights inflate into 3D: a
depth-constant volume gives the 2D output."""

import pytest
import torch
import torchvision
from conftest import assert_inflation_keeps_2d, calibrate_norms, timm_peer

import archc
import archc.errors


def _same_outputs(model, peer, size=(65, 67)):
    x = torch.randn(2, 3, *size, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = peer(x)
        assert theirs.std() > 1e-2
        torch.testing.assert_close(model.set_fast_paths(False)(x), theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnet50d", "resnext50_32x4d", "seresnet50", "ecaresnet50d"])
def test_timm_weights_give_timms_outputs(name):
    peer = timm_peer(name, 64)
    model = archc.load(name, weights=peer.state_dict(), weights_from="timm", resolution=64).eval()
    _same_outputs(model, peer)


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "resnext50_32x4d"])
def test_torchvision_weights_give_torchvisions_outputs(name):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        peer = calibrate_norms(getattr(torchvision.models, name)(weights=None), (3, 64, 64)).eval()
    model = archc.load(name, weights=peer.state_dict(), weights_from="torchvision", resolution=64).eval()
    _same_outputs(model, peer)


@pytest.mark.parametrize("name", ["resnet18", "resnet50d"])
def test_timm_weights_inflate_into_3d(name):
    peer = timm_peer(name, 64)
    volume = archc.load(name, dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=64).eval()
    assert_inflation_keeps_2d(volume, peer, 33, depth=32)  # every stride needs a depth of 2 or more before it


def test_monai_resnet10_weights_give_monais_outputs_in_3d():
    """MONAI's ResNet names its tensors as timm's and torchvision's ResNets do (conv1, bn1, layerN.j, downsample.0/.1, fc),
    so its state dict imports through the same layout; the shortcut conv's bias included."""
    import monai.networks.nets as nets

    with torch.random.fork_rng():
        torch.manual_seed(0)
        peer = calibrate_norms(nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=3), (1, 17, 19, 21)).eval()
    model = archc.load("monai_resnet10", in_channels=1, num_classes=3, weights=peer.state_dict(), weights_from="timm", resolution=(17, 19, 21)).eval()
    x = torch.randn(2, 1, 17, 19, 21, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = peer(x)
        assert theirs.std() > 1e-2
        torch.testing.assert_close(model.set_fast_paths(False)(x), theirs, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("source", ["monai", "efficientnet_pytorch"])
def test_a_layer_a_sources_networks_never_have_is_a_one_line_error(source):
    """resnet18d's deep stem (stem.conv1) has no name in the EfficientNet layouts: an archc error naming the tensor (it was
    a KeyError out of the layout)."""
    with pytest.raises(archc.errors.CheckpointError) as caught:
        archc.load("resnet18d", weights=archc.load("resnet18", seed=0).state_dict(), weights_from=source)
    assert str(caught.value) == f"{source} weights have no tensor for stem.conv1.weight: its networks have no such layer"


def test_a_backbone_checkpoint_gets_a_new_classifier_with_a_note():
    """timm's resnet18 saved with num_classes=0 (a backbone, as MedicalNet's checkpoints are): a 5-class model imports it,
    its pooled features are timm's, and the classifier is new, said in a note. A classifier held in part is an error."""
    import timm

    peer = timm.create_model("resnet18", num_classes=0).eval()
    model = archc.load("resnet18", num_classes=5, weights=peer.state_dict(), weights_from="timm").eval()
    assert model.archc_notes == ("initialised the classifier for 5 classes as a new model's: the weights have none (a backbone's)",)
    x = torch.randn(2, 3, 65, 67, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        torch.testing.assert_close(model.set_fast_paths(False).forward_head(model.forward_features(x), pre_logits=True), peer(x))
    half = timm.create_model("resnet18").state_dict()
    del half["fc.bias"]
    with pytest.raises(archc.errors.CheckpointError, match=r"^timm weights do not fit this model \(1 tensors missing, 0 unexpected\): missing fc.bias \[1000\]$"):
        archc.load("resnet18", weights=half, weights_from="timm")
