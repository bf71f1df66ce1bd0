"""Weights that travel: peers' checkpoints imported and checked number for number, 2D -> 3D inflation."""

import efficientnet_pytorch
import monai.networks.nets as monai_nets
import pytest
import timm
import torch
import torchvision
from conftest import assert_same_outputs, calibrate_norms, run_archc, timm_peer, write_evil_pickle

import archc
from archc.cli import main
from archc.errors import CheckpointError
from archc.weights import inflate_kernel, peer_names


def _compare(model, peer, x) -> float:
    """Largest difference between the two models' logits and their last feature maps (the head's norm output,
    before pooling: pooling averages border effects away, so logits alone would hide a padding mismatch)."""
    maps = []
    hooks = [model.head.bn.register_forward_hook(lambda m, i, o: maps.append(o.clone())),  # before the in-place act
             peer._bn1.register_forward_hook(lambda m, i, o: maps.append(o))]
    with torch.no_grad():
        ours, theirs = model(x), peer(x)
    for hook in hooks:
        hook.remove()
    assert theirs.std() > 1e-2 and maps[1].std() > 0.1  # the check is not vacuous
    return max((ours - theirs).abs().max().item(), (maps[0] - maps[1]).abs().max().item())


@pytest.mark.parametrize("dims, size, in_channels, num_classes", [(2, 224, 3, 1000), (3, 64, 1, 2)])
def test_monai_outputs_equal(dims, size, in_channels, num_classes):
    torch.manual_seed(0)
    peer = calibrate_norms(monai_nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=dims,
                                                in_channels=in_channels, num_classes=num_classes), (in_channels, *(size,) * dims))
    model = archc.load("efficientnet_b0", dims=dims, in_channels=in_channels, num_classes=num_classes,
                       weights=peer.state_dict(), weights_from="monai").eval()
    x = torch.randn(2, in_channels, *(size,) * dims)
    assert _compare(model, peer, x) < 1e-4
    assert model.plan.padding == "same" and model.plan.norm.eps == 1e-3  # MONAI's (TF's) conventions
    # The conventions matter: with symmetric padding the same weights compute something else.
    other = archc.load("efficientnet_b0", dims=dims, in_channels=in_channels, num_classes=num_classes,
                       weights=peer.state_dict(), weights_from="monai", overrides={"padding": "symmetric"}).eval()
    assert _compare(other, peer, x) > 1e-3


@pytest.mark.parametrize("preset, size", [("b0", 224), ("b3", 300)])
def test_efficientnet_pytorch_outputs_equal(preset, size):
    torch.manual_seed(0)
    peer = calibrate_norms(efficientnet_pytorch.EfficientNet.from_name(f"efficientnet-{preset}"), (3, size, size))
    model = archc.load("efficientnet_b0", preset=preset, weights=peer.state_dict(), weights_from="efficientnet_pytorch").eval()
    assert _compare(model, peer, torch.randn(2, 3, size, size)) < 1e-4


# Published key layouts (torchvision `efficientnet.py`: features.<i>.<j>.block.<k>, SE fc1/fc2, classifier.1;
# timm `_efficientnet_blocks.py`: conv_stem/bn1, DepthwiseSeparableConv conv_dw/bn1/se/conv_pw/bn2,
# InvertedResidual conv_pw/bn1/conv_dw/bn2/se/conv_pwl/bn3, conv_head/bn2, classifier), with the shapes of the
# released B0 / V2-S. These packages cannot be imported here, so the layouts are pinned from their source.
# The peers' real modules, built with their own code: importing their state_dict must give their outputs.
PEERS = {
    ("efficientnet_b0", "torchvision"): lambda: torchvision.models.efficientnet_b0(),
    ("efficientnetv2_s", "torchvision"): lambda: torchvision.models.efficientnet_v2_s(),
    ("efficientnetv2_m", "torchvision"): lambda: torchvision.models.efficientnet_v2_m(),
    ("efficientnet_b0", "timm"): lambda: timm.create_model("efficientnet_b0"),
    ("efficientnet_b0", "timm_tf"): lambda: timm.create_model("tf_efficientnet_b0"),  # TF "same" padding, eps 1e-3
}


@pytest.mark.parametrize("spec, source", PEERS)
def test_real_peer_modules_import_exactly(spec, source):
    """Every tensor lands where the peer uses it: with calibrated norms (so a swapped bn1/bn2 or a misplaced SE
    changes the output) and an input size that strides do not divide (so a padding mismatch shows), the
    imported model gives the peer's logits."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        peer = PEERS[spec, source]()
    peer = calibrate_norms(peer, (3, 72, 72))
    model = archc.load(spec, weights=peer.state_dict(), weights_from=source, resolution=72).eval()
    assert_same_outputs(model, peer, 72)


@pytest.mark.slow
@pytest.mark.parametrize("name", ["tf_efficientnet_b0", "tf_mixnet_s", "tf_efficientnetv2_s"])
def test_a_tf_name_computes_timms_module_of_that_name_whichever_timm_keyword(name):
    """timm's weights of a tf_ name are its TF port: weights_from='timm' gave symmetric padding and eps 1e-5 there (V2-S: 67%
    relative error). Now the name decides, as in timm; at an odd input size (where "same" pads asymmetrically) the
    outputs are timm's module's."""
    peer = timm_peer(name, 67)
    x = torch.randn(2, 3, 67, 67, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = peer(x)
        for source in ("timm", "timm_tf"):
            model = archc.load(name, weights=peer.state_dict(), weights_from=source, resolution=67).eval()
            assert model.archc_notes == ()  # the name already builds the port's conventions
            torch.testing.assert_close(model.set_fast_paths(False)(x), theirs, atol=1e-5, rtol=1e-5)


def test_a_tf_name_refuses_weights_trained_with_other_conventions():
    """torchvision's V2-S weights expect symmetric padding; timm's tf_efficientnetv2_s pads as TF does: one of the two is
    wrong, and the message names the network for those weights."""
    with torch.device("meta"):
        theirs = torchvision.models.efficientnet_v2_s().state_dict()
    with pytest.raises(CheckpointError) as info:
        archc.load("tf_efficientnetv2_s", weights=theirs, weights_from="torchvision")
    assert str(info.value) == ("tf_efficientnetv2_s is timm's port of TF's weights, built with padding same; torchvision weights were "
                               "trained with padding symmetric: load efficientnetv2_s for them (or set padding with overrides)")


@pytest.mark.slow
def test_a_tf_name_takes_other_weights_when_the_user_sets_their_conventions():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        peer = calibrate_norms(torchvision.models.efficientnet_v2_s(), (3, 72, 72))
    chosen = archc.load("tf_efficientnetv2_s", weights=peer.state_dict(), weights_from="torchvision", overrides=["padding=symmetric"], resolution=72)
    assert chosen.archc_notes == ()  # the user's padding is the weights' own: torchvision's network, said by no note
    assert_same_outputs(chosen.eval(), peer, 72)


@pytest.fixture(scope="module")
def monai_state():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return monai_nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2).state_dict()


def test_missing_extra_and_misshaped_tensors_are_named(monai_state):
    missing = dict(monai_state)
    del missing["_blocks.3.6._se_reduce.bias"]
    with pytest.raises(CheckpointError, match=r"missing _blocks\.3\.6\._se_reduce\.bias \[20\]"):
        archc.load("efficientnet_b0", weights=missing, weights_from="monai")
    extra = dict(monai_state, **{"_blocks.9.99._extra.weight": torch.zeros(3)})
    with pytest.raises(CheckpointError, match=r"unexpected _blocks\.9\.99\._extra\.weight \[3\]"):
        archc.load("efficientnet_b0", weights=extra, weights_from="monai")
    misshaped = dict(monai_state, **{"_blocks.2.3._depthwise_conv.weight": torch.zeros(144, 1, 3, 3)})
    with pytest.raises(CheckpointError, match=r"_blocks\.2\.3\._depthwise_conv\.weight has shape \[144, 1, 3, 3\], the model needs \[144, 1, 5, 5\]"):
        archc.load("efficientnet_b0", weights=misshaped, weights_from="monai")


@pytest.fixture(scope="module")
def efficientnet_pytorch_state():
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return efficientnet_pytorch.EfficientNet.from_name("efficientnet-b0").state_dict()


def _hint(source: str) -> str:
    return rf"these look like {source} weights: use --from {source} \(weights_from='{source}'\)"


def test_weights_of_another_layout_name_their_source(monai_state, efficientnet_pytorch_state):
    """MONAI and efficientnet-pytorch share every role name (`_blocks.`, `_depthwise_conv`, `_conv_stem`): the
    layout is told by which source's key names for this model the checkpoint matches best."""
    with pytest.raises(CheckpointError, match=r"monai weights do not fit this model \(.*\): missing _blocks\.0\.0\..*" + _hint("efficientnet_pytorch")):
        archc.load("efficientnet_b0", weights=efficientnet_pytorch_state, weights_from="monai")
    with pytest.raises(CheckpointError, match=r"efficientnet_pytorch weights do not fit.*" + _hint("monai")):
        archc.load("efficientnet_b0", weights=monai_state, weights_from="efficientnet_pytorch")
    with pytest.raises(CheckpointError, match=r"archc weights do not fit.*" + _hint("monai")):
        archc.load("efficientnet_b0", weights=monai_state)  # the default source is archc
    # Another size of the same family still matches its own layout best (B3 weights for a B0 model).
    with torch.random.fork_rng():
        b3 = efficientnet_pytorch.EfficientNet.from_name("efficientnet-b3").state_dict()
    with pytest.raises(CheckpointError, match=_hint("efficientnet_pytorch")):
        archc.load("efficientnet_b0", weights=b3, weights_from="monai")
    ours = archc.load("efficientnet_b0", seed=0).state_dict()
    with pytest.raises(CheckpointError, match=_hint("archc")):
        archc.load("efficientnet_b0", weights=ours, weights_from="efficientnet_pytorch")


@pytest.mark.parametrize("layout, claimed, hint", [
    ("torchvision", "monai", r"these look like torchvision weights: use --from torchvision \(weights_from='torchvision'\)"),
    # timm's own and its TF ports name tensors alike; only the conventions (padding, eps) tell them apart.
    ("timm", "torchvision", r"these look like timm or timm_tf weights \(the same names; timm_tf for tf_efficientnet_\* weights\): "
                            r"use --from timm or --from timm_tf \(weights_from='timm' or 'timm_tf'\)"),
])
def test_published_layouts_are_recognised(layout, claimed, hint):
    model = archc.load("efficientnet_b0", seed=0)
    state = model.state_dict()
    names = peer_names(model.plan, list(state), layout)
    with pytest.raises(CheckpointError, match=hint):
        archc.load("efficientnet_b0", weights={names[k]: v for k, v in state.items()}, weights_from=claimed)


def test_no_layout_hint_when_the_source_is_right_or_unknown(monai_state):
    missing = dict(monai_state)
    del missing["_conv_head.weight"]
    with pytest.raises(CheckpointError) as info:
        archc.load("efficientnet_b0", weights=missing, weights_from="monai")
    assert "missing _conv_head.weight" in str(info.value) and "look like" not in str(info.value)
    with pytest.raises(CheckpointError) as info:
        archc.load("efficientnet_b0", weights={"encoder.layer1.weight": torch.zeros(3)}, weights_from="monai")
    assert str(info.value) == (  # no block of the layout at all: the summary says so, then the keys
        "monai weights do not fit this model (0 blocks given, 16 expected; 360 tensors missing, 1 unexpected): "
        "missing _conv_stem.weight [32, 3, 3, 3]; missing _bn0.weight [32]; missing _bn0.bias [32]; missing _bn0.running_mean [32]; "
        "missing _bn0.running_var [32]; missing _bn0.num_batches_tracked []; missing _blocks.0.0._depthwise_conv.weight [32, 1, 3, 3]; "
        "missing _blocks.0.0._bn1.weight [32]; missing _blocks.0.0._bn1.bias [32]; missing _blocks.0.0._bn1.running_mean [32]; "
        "missing _blocks.0.0._bn1.running_var [32]; missing _blocks.0.0._bn1.num_batches_tracked []; and 349 more")


def test_input_channels_and_classes_are_adapted(monai_state):
    rgb = archc.load("efficientnet_b0", weights=monai_state, weights_from="monai", resolution=64).eval()
    grey = archc.load("efficientnet_b0", weights=monai_state, weights_from="monai", in_channels=1, resolution=64).eval()
    assert "adapted the stem from 3 to 1 input channels" in grey.archc_notes
    x = torch.randn(2, 1, 64, 64)
    with torch.no_grad():
        assert torch.allclose(grey(x), rgb(x.expand(2, 3, 64, 64)), atol=1e-5)  # a grey image as RGB
    five = archc.load("efficientnet_b0", weights=monai_state, weights_from="monai", in_channels=5, num_classes=4, seed=0)
    assert five.stem.conv.weight.shape == (32, 5, 3, 3)
    assert "re-initialised classifier.weight for 4 classes (the weights have 1000)" in five.archc_notes
    fresh = archc.load("efficientnet_b0", in_channels=5, num_classes=4, seed=0, overrides={"padding": "same", "norm.eps": 1e-3})
    assert torch.equal(five.classifier.weight, fresh.classifier.weight)  # the new model's own initialisation
    assert torch.equal(five.head.conv.weight, monai_state["_conv_head.weight"])  # the head is kept


def test_centre_inflation_reproduces_2d_on_depth_constant_volumes():
    torch.manual_seed(0)
    flat = calibrate_norms(archc.load("efficientnet_b0", seed=0, resolution=64), (3, 64, 64))
    volume = archc.load("efficientnet_b0", dims=3, resolution=64, weights=flat.state_dict(), inflate="center").eval()
    assert volume.stages[2][0].conv_dw.weight.shape == (144, 1, 5, 5, 5)
    x = torch.randn(2, 3, 64, 64)
    with torch.no_grad():
        logits_2d = flat(x)
        logits_3d = volume(x.unsqueeze(2).expand(2, 3, 16, 64, 64))  # the image repeated along depth
        assert logits_2d.std() > 1  # calibrated: logits of the size trained weights give
        # float32: equal up to rounding over 16 blocks (3D convs add their zero taps in another order).
        assert (logits_2d - logits_3d).abs().max() < 1e-5 * logits_2d.abs().max()
        # float64: the property itself, exactly.
        flat.double(), volume.double()
        x = x.double()
        assert (flat(x) - volume(x.unsqueeze(2).expand(2, 3, 16, 64, 64))).abs().max() < 1e-9


def test_inflation_kernels():
    w = torch.randn(4, 2, 3, 3)
    centre, mean = inflate_kernel(w, 3, "center"), inflate_kernel(w, 3, "mean")
    assert torch.equal(centre[:, :, 1], w) and centre[:, :, 0].abs().sum() == 0 and centre[:, :, 2].abs().sum() == 0
    assert torch.allclose(mean.sum(dim=2), w) and torch.allclose(mean[:, :, 0], w / 3)


def test_centre_inflation_is_the_default_of_load_and_of_the_cli(tmp_path, capsys):
    """One default everywhere (docs/weights.md): archc.load, `archc convert` and `archc inflate` centre 2D kernels
    unless told otherwise."""
    flat = archc.load("efficientnet_b0", seed=0, resolution=32)
    volume = archc.load("efficientnet_b0", dims=3, resolution=32, weights=flat.state_dict())
    assert "inflated 81 kernels from 2D to 3D (center)" in volume.archc_notes
    assert torch.equal(volume.stages[2][0].conv_dw.weight, inflate_kernel(flat.stages[2][0].conv_dw.weight, 5, "center"))
    archc.save(flat, tmp_path / "flat.safetensors")
    out = tmp_path / "volume.safetensors"
    assert main(["convert", "efficientnet_b0", "--weights", str(tmp_path / "flat.safetensors"), "--dims", "3", "--resolution", "32",
                 "-o", str(out)]) == 0
    assert "inflated 81 kernels from 2D to 3D (center)" in capsys.readouterr().out
    assert torch.equal(archc.load(str(out)).stages[2][0].conv_dw.weight, volume.stages[2][0].conv_dw.weight)


@pytest.mark.parametrize("argument, message", [
    ({"weights_from": "bogus"}, "unknown weights source 'bogus'; expected one of archc, monai, efficientnet_pytorch, timm_tf, torchvision, timm"),
    ({"inflate": "sideways"}, "unknown inflation 'sideways'; 2D kernels go into 3D by 'center' or 'mean'"),
])
def test_an_unknown_source_or_inflation_is_refused_without_weights_too(argument, message):
    with pytest.raises(archc.ArgumentError) as info:
        archc.load("efficientnet_b0", **argument)
    assert str(info.value) == message


def test_weight_files(tmp_path, monai_state):
    torch.save(monai_state, tmp_path / "monai.pth")
    torch.save({"state_dict": {f"module.{k}": v for k, v in monai_state.items()}}, tmp_path / "wrapped.pth")
    a = archc.load("efficientnet_b0", weights=tmp_path / "monai.pth", weights_from="monai")
    b = archc.load("efficientnet_b0", weights=str(tmp_path / "wrapped.pth"), weights_from="monai")
    assert all(torch.equal(x, y) for x, y in zip(a.state_dict().values(), b.state_dict().values()))
    with pytest.raises(CheckpointError, match="no such file"):
        archc.load("efficientnet_b0", weights=tmp_path / "absent.pth")
    with pytest.raises(archc.ArgumentError, match="unknown weights source 'keras'"):
        archc.load("efficientnet_b0", weights=monai_state, weights_from="keras")


def test_pickled_code_in_a_weights_file_never_runs(tmp_path):
    evil, marker = tmp_path / "evil.pth", tmp_path / "pwned"
    write_evil_pickle(evil, marker, wrap=lambda payload: {"_conv_stem.weight": payload})
    with pytest.raises(CheckpointError, match="not a weights file torch can read safely"):
        archc.load("efficientnet_b0", weights=evil, weights_from="monai")
    assert not marker.exists()


@pytest.mark.slow
def test_cli_convert_and_inflate(tmp_path, monai_state):
    torch.save(monai_state, tmp_path / "monai_b0.pth")
    converted, inflated = tmp_path / "b0.safetensors", tmp_path / "b0_3d.safetensors"
    result = run_archc("convert", "efficientnet_b0", "--weights", tmp_path / "monai_b0.pth", "--from", "monai", "-o", converted)
    assert result.returncode == 0, result.stderr
    assert f"saved to {converted}" in result.stdout
    result = run_archc("inflate", "efficientnet_b0", "--weights", converted, "--in-channels", "1", "--num-classes", "2",
                       "--resolution", "64", "--seed", "0", "-o", inflated)
    assert result.returncode == 0, result.stderr
    assert "adapted the stem from 3 to 1 input channels" in result.stdout and "inflated 81 kernels from 2D to 3D (center)" in result.stdout
    model = archc.load(str(inflated))
    assert model.plan.dims == 3 and model.plan.in_channels == 1 and model.plan.padding == "same"
    assert torch.equal(model.head.conv.weight[..., 0, 0, 0], monai_state["_conv_head.weight"][..., 0, 0])
    bad = run_archc("convert", "efficientnet_b0", "--weights", tmp_path / "monai_b0.pth", "--from", "torchvision", "-o", tmp_path / "x.safetensors")
    assert bad.returncode == 1 and bad.stderr.startswith(f"archc: error: {tmp_path / 'monai_b0.pth'}: torchvision weights do not fit this model "
                                                         "(0 blocks given, 16 expected; 360 tensors missing, 360 unexpected): missing features.0.0.weight")
    assert "these look like monai weights: use --from monai (weights_from='monai')" in bad.stderr
    assert not (tmp_path / "x.safetensors").exists()


def test_archc_checkpoint_conventions_are_not_dropped(tmp_path):
    """Weights trained with relu and a hard-sigmoid gate do not silently go into a silu + sigmoid model."""
    trained_with = {"activation": "relu", "se.gate": "hardsigmoid"}
    source = archc.load("efficientnet_b0", overrides=trained_with, resolution=64, seed=0)
    path = tmp_path / "relu.safetensors"
    archc.save(source, path)
    with pytest.raises(CheckpointError, match=r"relu\.safetensors: the weights were trained with other conventions than this spec builds: "
                       r"stem\.act: the weights have relu, this spec silu; head\.act: the weights have relu, this spec silu; "
                       r"stages\.0\.0\.act2: the weights have relu, this spec silu; stages\.0\.0\.se\.act: the weights have relu, this spec silu"):
        archc.load("efficientnet_b0", weights=path, resolution=64)
    result = run_archc("convert", "efficientnet_b0", "--weights", path, "--from", "archc", "-o", tmp_path / "out.safetensors")
    assert result.returncode == 1 and "other conventions" in result.stderr and not (tmp_path / "out.safetensors").exists()
    same = archc.load("efficientnet_b0", overrides=trained_with, weights=path, resolution=64).eval()
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(same(x), source.eval()(x))


@pytest.mark.parametrize("source, make", [
    ("monai", lambda: monai_nets.EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=2)),
    ("timm", lambda: timm.create_model("efficientnet_b0")),
    ("torchvision", lambda: torchvision.models.efficientnet_b0()),
])
def test_a_classifiers_weights_go_into_an_encoder(source, make):
    """A U-Net's encoder takes a pretrained classifier's weights: its head and classifier are left out, with a note,
    and every feature map equals the classifier's own at that stage."""
    with torch.random.fork_rng():
        torch.manual_seed(0)
        peer = calibrate_norms(make(), (3, 64, 64))
    encoder = archc.load("efficientnet_b0", features_only=True, weights=peer.state_dict(), weights_from=source, resolution=64).eval()
    assert any(note.startswith("left out the weights' head and classifier") for note in encoder.archc_notes)
    whole = archc.load("efficientnet_b0", weights=peer.state_dict(), weights_from=source, resolution=64).eval()
    encoder.set_fast_paths(False), whole.set_fast_paths(False)  # the same ops on both sides: equal to the bit
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        maps = encoder(x)
        stem_and_stages = [whole.stem(x)]
        for stage in whole.stages:
            stem_and_stages.append(stage(stem_and_stages[-1]))
    assert all(torch.equal(m, stem_and_stages[info["stage"] + 1]) for m, info in zip(maps, encoder.feature_info))
    with pytest.raises(CheckpointError, match="unexpected"):  # the head is left out for an encoder only
        archc.load("efficientnet_b0", features_only=True, weights={**peer.state_dict(), "extra.weight": torch.zeros(1)},
                   weights_from=source)


def test_a_misfit_leads_with_what_the_key_names_tell(monai_state, efficientnet_pytorch_state):
    """Weights of another size of the network: the blocks per stage, counted from the key names, before any key."""
    with pytest.raises(CheckpointError) as info:
        archc.load("efficientnet_b0", preset="b3", weights=monai_state, weights_from="monai")
    assert str(info.value).startswith(
        "monai weights do not fit this model (16 blocks given, 26 expected; stage 0 has 1 repeats in the weights, 2 in the spec; "
        "stage 1 has 2 repeats in the weights, 3 in the spec; stage 2 has 2 repeats in the weights, 3 in the spec; "
        "stage 3 has 3 repeats in the weights, 5 in the spec; 3 more stages differ; 522 tensors missing, 308 unexpected): "
        "missing _blocks.0.1._depthwise_conv.weight [24, 1, 3, 3]; ")
    assert str(info.value).endswith("; and 818 more") and str(info.value).count("; missing ") == 11  # a dozen keys at most
    with pytest.raises(CheckpointError, match=r"^efficientnet_pytorch weights do not fit this model \(16 blocks given, 26 expected; "
                                              r"220 tensors missing, 6 unexpected\): missing _blocks\.16\._expand_conv\.weight"):
        archc.load("efficientnet_b0", preset="b3", weights=efficientnet_pytorch_state, weights_from="efficientnet_pytorch")


@pytest.fixture(scope="module")
def b0_state():
    return archc.load("efficientnet_b0", seed=0, resolution=32).state_dict()


def _with(state: dict, **changed) -> dict:
    """``state`` with some tensors replaced (keys with dots written with __)."""
    return {**state, **{key.replace("__", "."): value for key, value in changed.items()}}


def test_values_no_trained_network_holds_are_refused_by_name(b0_state):
    """A NaN kernel, an infinite norm weight and a negative running variance used to import and give NaN outputs."""
    kernel = b0_state["stem.conv.weight"].clone()
    kernel[0, 0, 0, 0] = float("nan")
    broken = _with(b0_state, stem__conv__weight=kernel, stages__1__0__bn1__weight=torch.full((96,), float("inf")),
                   head__bn__running_var=-torch.ones(1280))
    with pytest.raises(CheckpointError) as info:
        archc.load("efficientnet_b0", weights=broken, resolution=32)
    assert str(info.value) == (
        "archc weights cannot be imported: stem.conv.weight has 1 non-finite values (NaN or infinity); "
        "stages.1.0.bn1.weight has 96 non-finite values (NaN or infinity); "
        "head.bn.running_var has 1,280 negative values, and a running variance cannot be negative")


@pytest.mark.parametrize("dtype", [torch.bool, torch.int64, torch.complex64, torch.float8_e4m3fn])
def test_weights_of_a_dtype_no_float_model_holds_are_refused(b0_state, dtype):
    """These were cast to float32 in silence (a checkpoint of archc's own with them is refused too)."""
    kernel = b0_state["stages.0.0.conv_dw.weight"].to(dtype)
    with pytest.raises(CheckpointError) as info:
        archc.load("efficientnet_b0", weights=_with(b0_state, stages__0__0__conv_dw__weight=kernel), resolution=32)
    assert str(info.value) == (f"archc weights cannot be imported: stages.0.0.conv_dw.weight has dtype {str(dtype)[6:]}, "
                               "expected a floating dtype (float16, bfloat16, float32, float64)")


@pytest.mark.parametrize("dtype", [torch.float16, torch.bfloat16, torch.float64])
def test_floating_weights_of_other_precisions_are_cast(b0_state, dtype):
    """Half, bfloat16 and double checkpoints are ordinary: each value becomes the nearest float32 (exactly, from 16 bits)."""
    model = archc.load("efficientnet_b0", weights={k: v.to(dtype) if v.is_floating_point() else v for k, v in b0_state.items()}, resolution=32)
    kernel = b0_state["stages.0.0.conv_dw.weight"]
    assert model.stages[0][0].conv_dw.weight.dtype == torch.float32
    assert torch.equal(model.stages[0][0].conv_dw.weight, kernel.to(dtype).float())


CRAFTED = {  # a state_dict entry no checkpoint should hold -> the one line that says which
    "a stem with no input channels": (lambda s: _with(s, stem__conv__weight=torch.zeros(32, 0, 3, 3)),
                                      "stem.conv.weight has shape [32, 0, 3, 3], the model needs [32, 3, 3, 3] for stem.conv.weight"),
    "a sparse kernel": (lambda s: _with(s, stem__conv__weight=s["stem.conv.weight"].to_sparse()),
                        "not a state_dict archc can import: stem.conv.weight is sparse_coo, not a dense tensor"),
    "a meta tensor": (lambda s: _with(s, stem__conv__weight=torch.empty(32, 3, 3, 3, device="meta")),
                      "not a state_dict archc can import: stem.conv.weight has no values (a meta tensor)"),
    "a name that is not text": (lambda s: {**s, 7: torch.zeros(1)}, "not a state_dict archc can import: the name 7 is not text"),
}


@pytest.mark.parametrize("case", CRAFTED)
def test_crafted_state_dicts_are_refused_in_one_line(b0_state, case, tmp_path, capsys):
    """Through archc.load and through `archc convert` (a file): one line naming the tensor, exit 1, no file written."""
    craft, message = CRAFTED[case]
    with pytest.raises(CheckpointError) as info:
        archc.load("efficientnet_b0", weights=craft(b0_state), resolution=32)
    assert str(info.value).endswith(message)
    torch.save(craft(b0_state), tmp_path / "crafted.pth")
    assert main(["convert", "efficientnet_b0", "--weights", str(tmp_path / "crafted.pth"), "--resolution", "32", "-o", str(tmp_path / "out.safetensors")]) == 1
    err = capsys.readouterr().err
    assert err.endswith(f"{message}\n") and err.count("\n") == 1 and err.startswith(f"archc: error: {tmp_path / 'crafted.pth'}: ")
    assert not (tmp_path / "out.safetensors").exists()


@pytest.mark.slow
def test_crafted_weights_through_the_command_line(b0_state, tmp_path):
    """The same in a fresh process, as a user runs it: no traceback, nothing written."""
    broken = _with(b0_state, stem__conv__weight=torch.full((32, 3, 3, 3), float("nan")))
    torch.save(broken, tmp_path / "nan.pth")
    result = run_archc("convert", "efficientnet_b0", "--weights", tmp_path / "nan.pth", "--resolution", "32", "-o", tmp_path / "out.safetensors")
    assert result.returncode == 1 and result.stderr == (
        f"archc: error: {tmp_path / 'nan.pth'}: archc weights cannot be imported: stem.conv.weight has 864 non-finite values (NaN or infinity)\n")
    assert not (tmp_path / "out.safetensors").exists()
