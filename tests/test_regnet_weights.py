"""timm's RegNet state dicts import into the shipped RegNet specs with timm's outputs (random weights, batch norms
calibrated on random images, an odd input size): the stage table the regnet: section generated is named as timm's
RegNet class names it (s1.b1.conv1.conv, se.fc1, downsample.conv, head.fc), not as its ResNet (layer1.0.conv1), though
the rows are the same bottleneck rows. 2D weights inflate into 3D, an encoder takes a classifier's checkpoint, and a
checkpoint of another depth is told per stage, counted from timm's own block names."""

import json

import pytest
import timm
import torch
from conftest import assert_inflation_keeps_2d, assert_same_outputs

import archc
from archc.errors import CheckpointError


@pytest.mark.slow
@pytest.mark.parametrize("name", ["regnetx_002", "regnety_002", "regnety_008", "regnetx_004_tv"])
def test_timm_weights_give_timms_outputs(name, calibrated_peer):
    peer = calibrated_peer(name)
    model = archc.load(name, weights=peer.state_dict(), weights_from="timm", resolution=64).eval()
    assert model.plan.stage_generator == "regnet"
    assert_same_outputs(model, peer, (65, 67))


def test_the_same_rows_written_out_are_named_as_a_resnet(tmp_path):
    """The Plan says which generator wrote the stage table: the bottleneck rows regnetx_002's section generates, written
    out by hand, make the same stages, and timm's layout names them as its ResNet's (layer1.0.conv1)."""
    generated = archc.lower("regnetx_002")
    rows = [{"block": "bottleneck", "kernel": 3, "stride": 2, "channels": b.out_channels, "mid": b.convs[0].out_channels,
             "group_size": b.convs[1].in_channels // b.convs[1].groups, "repeats": len(s.blocks), "shortcut": "conv"}
            for s in generated.stages for b in s.blocks[:1]]
    raw = archc.read("regnetx_002").model_dump(mode="json", exclude_unset=True)
    raw.pop("regnet"), raw.pop("aliases", None)
    path = tmp_path / "written.yaml"
    path.write_text(json.dumps({**raw, "stages": rows}))  # JSON is YAML 1.2
    written = archc.lower(str(path))
    assert written.stage_generator is None and written.stages == generated.stages
    with pytest.raises(CheckpointError, match=r"^timm weights do not fit this model \(0 blocks given, 13 expected; .* missing layer1\.0\.conv1\.weight "):
        archc.load(str(path), weights=timm.create_model("regnetx_002").state_dict(), weights_from="timm")


@pytest.mark.slow
def test_timm_weights_inflate_into_3d(calibrated_peer):
    peer = calibrated_peer("regnety_002")
    volume = archc.load("regnety_002", dims=3, weights=peer.state_dict(), weights_from="timm", inflate="center", resolution=64).eval()
    assert_inflation_keeps_2d(volume, peer, 33, depth=32)  # every stride needs a depth of 2 or more before it


@pytest.mark.slow
def test_a_classifiers_weights_go_into_an_encoder(calibrated_peer):
    """A features_only RegNet takes timm's classifier checkpoint: head.fc is left out, with a note, and each feature map
    is timm's at that level (its stem and stages s1..s4)."""
    peer = calibrated_peer("regnety_002")
    encoder = archc.load("regnety_002", features_only=True, weights=peer.state_dict(), weights_from="timm", resolution=64).eval()
    assert any(note.startswith("left out the weights' head and classifier (2 tensors)") for note in encoder.archc_notes)
    theirs = []
    hooks = [getattr(peer, name).register_forward_hook(lambda m, i, o: theirs.append(o)) for name in ("stem", "s1", "s2", "s3", "s4")]
    x = torch.randn(2, 3, 65, 67, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        peer(x)
        maps = encoder.set_fast_paths(False)(x)
    for hook in hooks:
        hook.remove()
    assert len(maps) == len(theirs) == 5
    for ours, map_ in zip(maps, theirs):
        torch.testing.assert_close(ours, map_, atol=1e-4, rtol=1e-4)


@pytest.mark.slow
@pytest.mark.parametrize("ours, theirs", [("regnetx_004_tv", "regnet_x_400mf"), ("regnety_008_tv", "regnet_y_800mf"),
                                          ("regnety_004", "regnet_y_400mf")])
def test_torchvision_weights_give_torchvisions_outputs(ours, theirs):
    """torchvision's RegNets are timm's *_tv (and, where the rounding agrees, the plain) specs: trunk_output.block1.block1-0's
    f.a/f.b/f.se/f.c and proj import with torchvision's parameter count and outputs."""
    import torchvision
    from conftest import calibrate_norms

    with torch.random.fork_rng():
        torch.manual_seed(0)
        peer = calibrate_norms(getattr(torchvision.models, theirs)(), (3, 64, 64)).eval()
    model = archc.load(ours, weights=peer.state_dict(), weights_from="torchvision").eval()
    assert archc.analyze(model.plan).params == sum(p.numel() for p in peer.parameters())
    assert_same_outputs(model, peer, (65, 67))


def test_a_torchvision_misfit_counts_its_regnet_blocks_per_stage():
    import torchvision

    state = torchvision.models.regnet_y_400mf().state_dict()  # (its width rule computes with tensors: not on the meta device)
    with pytest.raises(CheckpointError, match=r"^torchvision weights do not fit this model \(16 blocks given, 13 expected; stage 1 has 3 "
                                              r"repeats in the weights, 1 in the spec; "):
        archc.load("regnety_002", weights=state, weights_from="torchvision")


def test_a_misfit_counts_timms_regnet_blocks_per_stage():
    """timm's RegNet numbers stages and blocks from 1 (s1.b1): a RegNet-Y 400MF checkpoint for the 200MF spec, and the
    200MF's own for a spec whose second stage has one block more, say so per stage of archc's (from 0)."""
    with pytest.raises(CheckpointError) as info:
        archc.load("regnety_002", weights=timm.create_model("regnety_004").state_dict(), weights_from="timm")
    # timm regnety_004: depths 1, 3, 6, 6; regnety_002: 1, 1, 4, 7
    assert str(info.value).startswith(
        "timm weights do not fit this model (16 blocks given, 13 expected; stage 1 has 3 repeats in the weights, 1 in the spec; "
        "stage 2 has 6 repeats in the weights, 4 in the spec; stage 3 has 6 repeats in the weights, 7 in the spec; ")
    with pytest.raises(CheckpointError, match=r"^timm weights do not fit this model \(13 blocks given, 14 expected; stage 1 has 1 repeats in the "
                                              r"weights, 2 in the spec; 18 tensors missing, 0 unexpected\): missing s2\.b2\.conv1\.conv\.weight "):
        archc.load("regnetx_002", overrides={"stages[1].repeats": 2}, weights=timm.create_model("regnetx_002").state_dict(), weights_from="timm")


def test_a_misfit_counts_timms_resnet_blocks_per_stage():
    """timm's ResNet numbers stages from 1 (layer1.0): ResNet-50's checkpoint for ResNet-18, and ResNet-18's for a spec
    whose third stage has one block more."""
    with pytest.raises(CheckpointError) as info:
        archc.load("resnet18", weights=timm.create_model("resnet50").state_dict(), weights_from="timm")
    assert str(info.value).startswith(  # ResNet-50: 3, 4, 6, 3 bottlenecks; ResNet-18: 2 basic blocks per stage
        "timm weights do not fit this model (16 blocks given, 8 expected; stage 0 has 3 repeats in the weights, 2 in the spec; "
        "stage 1 has 4 repeats in the weights, 2 in the spec; stage 2 has 6 repeats in the weights, 2 in the spec; "
        "stage 3 has 3 repeats in the weights, 2 in the spec; ")
    with pytest.raises(CheckpointError, match=r"^timm weights do not fit this model \(8 blocks given, 9 expected; stage 2 has 2 repeats in the "
                                              r"weights, 3 in the spec; 12 tensors missing, 0 unexpected\): missing layer3\.2\.conv1\.weight "):
        archc.load("resnet18", overrides={"stages[2].repeats": 3}, weights=timm.create_model("resnet18").state_dict(), weights_from="timm")
