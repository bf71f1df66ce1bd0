"""MONAI's residual networks as MONAI's users name them: its ResNet (and MedicalNet's checkpoints, which it follows) and its
SENet load with ``weights_from="monai"`` and give the outputs of MONAI's real modules (random weights, batch norms
calibrated on random volumes, odd input sizes); shortcut type A is ``shortcut: zero_pad``; the SE-ResNet/ResNeXt specs count
MONAI's parameters in 2D and 3D."""

import monai.networks.nets as nets
import pytest
import torch
from conftest import calibrate_norms
from reference_residual import MONAI_RESNET_FEATURES_3D_1CH, MONAI_SENET
from torch.utils.flop_counter import FlopCounterMode

import archc
from archc import weights
from archc.errors import CheckpointError, LoweringError, SpecError

ZERO_PAD = {f"stages[{i}].shortcut": "zero_pad" for i in range(4)}  # MONAI's shortcut_type "A" in every stage


def _monai(make, input_shape):
    with torch.random.fork_rng():
        torch.manual_seed(0)
        return calibrate_norms(make(), input_shape).eval()


def _assert_same_outputs(model, peer, shape):
    x = torch.randn(2, *shape, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        theirs = peer(x)
        assert theirs.std() > 1e-2
        torch.testing.assert_close(model.eval().set_fast_paths(False)(x), theirs, atol=1e-4, rtol=1e-4)


def _params(module) -> int:
    return sum(p.numel() for p in module.parameters())


@pytest.mark.slow
def test_monai_resnet_weights_load_from_monai():
    """A user of MONAI names the source "monai": its ResNet's keys (conv1, bn1, layerN.j, downsample.0/.1 with the bias, fc)."""
    shape = (1, 17, 19, 21)
    peer = _monai(lambda: nets.resnet10(spatial_dims=3, n_input_channels=1, num_classes=3), shape)
    model = archc.load("monai_resnet10", in_channels=1, num_classes=3, weights=peer.state_dict(), weights_from="monai", resolution=shape[1:])
    assert model.archc_notes == ()  # MONAI's ResNet is torch-native: none of the TF conventions of its EfficientNet weights
    _assert_same_outputs(model, peer, shape)


def test_monais_residual_networks_have_torchs_conventions():
    with torch.device("meta"):
        peer = nets.resnet10()
    expected = {"padding": "symmetric", "norm.eps": peer.bn1.eps}
    assert weights.conventions("monai", {"basic"}) == weights.conventions("monai", {"bottleneck"}) == expected
    assert weights.conventions("monai", {"mbconv"}) == {"padding": "same", "norm.eps": 1e-3}  # its EfficientNet: TF's


@pytest.mark.parametrize("name", ["resnet10", "resnet18", "resnet34", "resnet50"])
def test_zero_pad_counts_monais_shortcut_a(name):
    for dims in (3, 2):
        with torch.device("meta"):
            peer = getattr(nets, name)(spatial_dims=dims, shortcut_type="A")
        plan = archc.lower(f"monai_{name}", dims=dims, overrides=ZERO_PAD)
        assert archc.analyze(plan).params == _params(peer)
        assert not any(unit for block in plan.blocks for unit in block.shortcut if isinstance(unit, archc.ir.ConvUnit))


@pytest.mark.parametrize("name, dims, shape", [("resnet10", 3, (1, 17, 19, 21)), pytest.param("resnet50", 2, (1, 33, 35), marks=pytest.mark.slow)])
def test_zero_pad_gives_monais_shortcut_a_outputs(name, dims, shape):
    """Basic blocks whose skip subsamples and pads (resnet10), bottlenecks whose first skip pads at stride 1 (resnet50's 64 -> 256)."""
    peer = _monai(lambda: getattr(nets, name)(spatial_dims=dims, n_input_channels=1, num_classes=3, shortcut_type="A"), shape)
    model = archc.load(f"monai_{name}", dims=dims, in_channels=1, num_classes=3, overrides=ZERO_PAD, weights=peer.state_dict(),
                       weights_from="monai", resolution=shape[1:])
    _assert_same_outputs(model, peer, shape)


# MedicalNet's checkpoints (Tencent/MedicalNet, MONAI's get_medicalnet_pretrained_resnet_args): a stride-2 stem, no classifier,
# shortcut A for resnet18 and resnet34, shortcut B without a bias for the others; saved from DataParallel ("module." keys)
# inside {"state_dict": ...}.
MEDICALNET = {"resnet10": {"shortcut_type": "B", "bias_downsample": False}, "resnet18": {"shortcut_type": "A", "bias_downsample": True}}


@pytest.mark.slow
@pytest.mark.parametrize("name", sorted(MEDICALNET))
def test_a_medicalnet_checkpoint_loads_with_medicalnets_outputs(name, tmp_path):
    shape = (1, 19, 17, 21)
    peer = _monai(lambda: getattr(nets, name)(spatial_dims=3, n_input_channels=1, conv1_t_stride=2, feed_forward=False, **MEDICALNET[name]), shape)
    path = tmp_path / f"{name}_23dataset.pth"
    torch.save({"state_dict": {f"module.{key}": value for key, value in peer.state_dict().items()}}, path)
    shortcut = "zero_pad" if MEDICALNET[name]["shortcut_type"] == "A" else "conv"
    overrides = {"stem.layers[0].stride": 2, **{f"stages[{i}].shortcut": shortcut for i in range(4)}}
    model = archc.load(f"monai_{name}", in_channels=1, num_classes=0, overrides=overrides, weights=path, weights_from="monai", resolution=shape[1:])
    assert _params(model) == _params(peer) == MONAI_RESNET_FEATURES_3D_1CH[name]  # MONAI's ResNetFeatures: MedicalNet's backbone
    _assert_same_outputs(model, peer, shape)  # the pooled features, as MONAI's ResNet without fc returns them


@pytest.mark.slow
def test_monais_stem_options_are_overrides():
    """conv1_t_stride and no_max_pool are the stem's conv stride and pool; conv1_t_size its kernel."""
    shape = (1, 17, 19, 21)
    overrides = {"stem.layers[0].stride": 2, "stem.layers[0].kernel": 5, "stem.pool": None}
    with torch.device("meta"):
        assert archc.analyze(archc.lower("monai_resnet18", overrides=overrides)).params == _params(
            nets.resnet18(conv1_t_size=5, conv1_t_stride=2, no_max_pool=True))
    peer = _monai(lambda: nets.resnet18(spatial_dims=3, n_input_channels=1, num_classes=3, conv1_t_size=5, conv1_t_stride=2, no_max_pool=True), shape)
    model = archc.load("monai_resnet18", in_channels=1, num_classes=3, overrides=overrides, weights=peer.state_dict(), weights_from="monai",
                       resolution=shape[1:])
    _assert_same_outputs(model, peer, shape)


SENET = {"monai_seresnet50": "SEResNet50", "monai_seresnet101": "SEResNet101", "monai_seresnet152": "SEResNet152",
         "monai_seresnext50": "SEResNext50", "monai_seresnext101": "SEResNext101"}


@pytest.mark.parametrize("name", sorted(SENET))
def test_senet_counts_equal_monais(name):
    """Parameters, and MACs (FlopCounterMode / 2 on MONAI's module: the stride on conv1 makes SE-ResNet50 cheaper than timm's)."""
    for dims, channels, size in ((3, 3, 64), (3, 1, 64), (2, 3, 224), (2, 1, 224)):
        with torch.device("meta"):
            peer = getattr(nets, SENET[name])(spatial_dims=dims, in_channels=channels).eval()
            with FlopCounterMode(display=False) as flops:
                peer(torch.randn(1, channels, *(size,) * dims))
        report = archc.analyze(archc.lower(name, dims=dims, in_channels=channels, resolution=size))
        assert (report.params, report.macs) == (_params(peer), flops.get_total_flops() // 2)
        if (SENET[name], dims, channels) in MONAI_SENET:
            assert _params(peer) == MONAI_SENET[(SENET[name], dims, channels)]


@pytest.mark.slow
@pytest.mark.parametrize("name, dims, shape", [("monai_seresnet50", 3, (1, 35, 37, 39)), ("monai_seresnext50", 3, (1, 35, 37, 39)),
                                               ("monai_seresnet50", 2, (3, 67, 69))])
def test_senet_weights_give_monais_outputs(name, dims, shape):
    """MONAI's keys (layer0.conv1, layerN.j.conv1.conv / conv1.adn.N, se_layer.fc.0/.2 as nn.Linear, project.conv / project.adn.N,
    last_linear); the stride on conv1 (SE-ResNet) or conv2 (SE-ResNeXt); the stem pool's ceil_mode (35 -> 18 -> 9, not 8). The
    last map keeps several positions: batch norms calibrated on one position per sample would amplify rounding past 1e-4."""
    peer = _monai(lambda: getattr(nets, SENET[name])(spatial_dims=dims, in_channels=shape[0], num_classes=3), shape)
    model = archc.load(name, dims=dims, in_channels=shape[0], num_classes=3, weights=peer.state_dict(), weights_from="monai", resolution=shape[1:])
    assert model.archc_notes == ()
    _assert_same_outputs(model, peer, shape)


def test_monai_senet_keys_are_monais():
    with torch.device("meta"):
        peer = nets.SEResNet50(spatial_dims=2, in_channels=3)
    plan = archc.lower("monai_seresnet50", dims=2)
    keys = list(archc.build(plan, seed=0).state_dict())
    assert sorted(weights.peer_names(plan, keys, "monai").values()) == sorted(peer.state_dict())


def test_monai_weights_with_another_source_name_the_source():
    with torch.device("meta"):
        state = nets.SEResNext50(spatial_dims=2, in_channels=3, num_classes=3).state_dict()
    state = {key: torch.zeros(value.shape, dtype=value.dtype) for key, value in state.items()}
    with pytest.raises(CheckpointError, match=r"these look like monai weights: use --from monai \(weights_from='monai'\)$"):
        archc.load("monai_seresnext50", dims=2, num_classes=3, weights=state, weights_from="timm")
    with pytest.raises(CheckpointError, match=r"^efficientnet_pytorch weights have no bottleneck blocks \(stages.0.0\)$"):
        archc.load("monai_seresnext50", dims=2, num_classes=3, weights=state, weights_from="efficientnet_pytorch")


def test_stride_on_is_a_bottleneck_field():
    with pytest.raises(SpecError, match=r"stages\[0\]: stride_on does not apply to a basic block \(only to bottleneck\)$"):
        archc.read("monai_resnet18", {"stages[0].stride_on": "conv1"})


def test_zero_pad_cannot_narrow():
    spec = archc.read("monai_resnet18", {"stages[1].shortcut": "zero_pad", "stages[1].channels": 32})
    with pytest.raises(LoweringError, match=r"stages\[1\].shortcut: got zero_pad, but stages.1.0 narrows 64 channels to 32: zero_pad only adds "
                                            r"channels \(use conv\)$"):
        archc.lower(spec)


@pytest.mark.slow
def test_a_zero_pad_network_scripts_traces_folds_draws_and_saves(tmp_path):
    """The zero-channel skip is a layer kind every consumer knows: TorchScript, torch.fx, BN folding, the layer diagram, checkpoints."""
    model = archc.load("monai_resnet10", dims=2, in_channels=1, num_classes=3, overrides=ZERO_PAD, resolution=33, seed=0)
    model = calibrate_norms(model, (1, 33, 35))
    x = torch.randn(2, 1, 33, 35, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        expected = model.set_fast_paths(False)(x)
        torch.testing.assert_close(torch.jit.script(model)(x), expected)
        torch.testing.assert_close(torch.fx.symbolic_trace(model)(x), expected)
        archc.save(model, tmp_path / "zero_pad.safetensors")
        assert torch.equal(archc.load(tmp_path / "zero_pad.safetensors").eval().set_fast_paths(False)(x), expected)
        torch.testing.assert_close(model.fuse_norms()(x), expected, atol=1e-4, rtol=1e-4)
    drawn = archc.render(archc.lower("monai_resnet10", dims=2, overrides=ZERO_PAD), detail="layer").source
    assert "zero channels 64→128" in drawn and "avg pool k1 s2" in drawn
    assert [layer.path for layer in archc.analyze(model.plan).layers if layer.type == "pad"] == [f"stages.{i}.0.downsample.1" for i in (1, 2, 3)]


def test_planning_pads_senets_unpadded_pool_on_an_axis_it_keeps():
    """SENet's stem pool has no padding (ceil_mode halves what it pools); where a plan keeps an axis at stride 1 the window
    is padded by kernel // 2 there, so the 32 slices stay 32."""
    planned = archc.plan("monai_seresnet50", spacing=(5, 0.7, 0.7), shape=(32, 256, 256))
    pool = archc.lower(planned.spec).stem.pool
    assert (pool.stride, pool.padding, pool.ceil_mode) == ((1, 2, 2), (1, 0, 0), True)
    assert pool.output((32, 128, 128)) == (32, 64, 64)
    assert any(d.path == "stem.pool.padding" and "the map keeps its size there" in d.reason for d in planned.decisions)
