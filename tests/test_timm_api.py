"""timm's model API on archc networks: the same training code takes a timm model or an archc one.

Every helper below is written against timm's conventions and run on ``timm.create_model(...)`` as well, so a
test fails if archc drifts from what timm's own models do.
"""

import copy

import pytest
import torch
from conftest import timm_peer
from reference_figures import TIMM_PARAMS
from torch import nn

import archc
import archc.errors
from archc.errors import EmitError

timm = pytest.importorskip("timm")
from PIL import Image  # noqa: E402  (timm's transforms take PIL images)
from timm.data import resolve_data_config  # noqa: E402

IMAGENET_MEAN, IMAGENET_STD = (0.485, 0.456, 0.406), (0.229, 0.224, 0.225)


def timm_b0(**kwargs):
    torch.manual_seed(0)
    return timm.create_model("efficientnet_b0", **kwargs)


def archc_b0(**kwargs):
    return archc.load("efficientnet_b0", seed=0, **kwargs)


MAKERS = {"timm": timm_b0, "archc": archc_b0}


def head_checks(model, x):
    """What training code built on timm assumes of a classifier, written as such code would be."""
    model.eval()
    with torch.no_grad():
        features = model.forward_features(x)
        assert torch.allclose(model.forward_head(features), model(x), atol=1e-6)
        assert model.forward_head(features, pre_logits=True).shape == (x.shape[0], model.num_features)
    classifier = model.get_classifier()
    assert isinstance(classifier, nn.Linear)
    assert (classifier.in_features, classifier.out_features) == (model.num_features, model.num_classes)


@pytest.mark.parametrize("maker", MAKERS)
def test_forward_head_and_classifier_as_timm(maker):
    model = MAKERS[maker]()
    assert (model.num_features, model.num_classes) == (1280, 1000)
    head_checks(model, torch.randn(2, 3, 64, 64))


@pytest.mark.parametrize("maker", MAKERS)
def test_reset_classifier_as_timm(maker):
    model = MAKERS[maker]()
    model.reset_classifier(10)
    x = torch.randn(2, 3, 64, 64)
    assert model.num_classes == 10 and model(x).shape == (2, 10)
    head_checks(model, x)
    model.reset_classifier(0)
    assert isinstance(model.get_classifier(), nn.Identity) and model.num_classes == 0
    assert model.eval()(x).shape == (2, model.num_features)


def test_reset_classifier_keeps_the_plan_truthful(tmp_path):
    model = archc_b0()
    model.reset_classifier(10)
    assert model.plan.head.num_classes == 10
    assert archc.analyze(model.plan).params == sum(p.numel() for p in model.parameters()) == TIMM_PARAMS["efficientnet_b0"] - 1280 * 990 - 990
    # initialised as archc initialises its linears: uniform(+-1/sqrt(out)), zero bias
    weight = model.get_classifier().weight
    assert weight.abs().max() <= 1 / 10 ** 0.5 and weight.std() > 0.1 and not model.get_classifier().bias.any()
    # saved and restored as the module it now is
    path = tmp_path / "b0_10.safetensors"
    archc.save(model, path)
    restored = archc.load(path)
    assert restored.num_classes == 10
    x = torch.randn(1, 3, 64, 64)
    with torch.no_grad():
        assert torch.equal(restored.eval()(x), model.eval()(x))
    model.reset_classifier(0)
    assert archc.analyze(model.plan).params == sum(p.numel() for p in model.parameters())


def test_reset_classifier_keeps_mode_and_refuses_other_pools():
    model = archc_b0().train()
    model.reset_classifier(5, global_pool="avg")
    assert model.get_classifier().training
    with pytest.raises(archc.ArgumentError, match="global_pool"):
        model.reset_classifier(5, global_pool="max")


@pytest.mark.parametrize("maker", MAKERS)
def test_grad_checkpointing_as_timm(maker):
    """Same loss and gradients with and without checkpointing, and the same state_dict keys."""
    x = torch.randn(2, 3, 64, 64)
    results = []
    for enable in (False, True):
        model = MAKERS[maker]()
        model.train()
        keys = list(model.state_dict())
        model.set_grad_checkpointing(enable)
        assert list(model.state_dict()) == keys
        torch.manual_seed(1)  # dropout and drop-path masks: the recomputation must replay the same ones
        loss = model(x).square().mean()
        loss.backward()
        results.append((loss.item(), {k: p.grad for k, p in model.named_parameters()}))
    (plain_loss, plain), (ck_loss, ck) = results
    assert ck_loss == pytest.approx(plain_loss, abs=1e-6)
    assert all(torch.allclose(plain[k], ck[k], atol=1e-6) for k in plain)


def test_grad_checkpointing_switches_at_run_time():
    model = archc.load("efficientnet_b0", resolution=32, seed=0)
    assert not model.plan.checkpointing
    model.set_grad_checkpointing()
    assert model.plan.checkpointing and all(stage.checkpointing for stage in model.stages)
    model.set_grad_checkpointing(False)
    assert not model.plan.checkpointing and not any(stage.checkpointing for stage in model.stages)
    assert archc.load("efficientnet_b0", resolution=32, checkpointing=True).stages[0].checkpointing


def test_feature_info_as_timm():
    ours = archc_b0(features_only=True).feature_info
    theirs = timm_b0(features_only=True).feature_info
    assert ours.channels() == theirs.channels() == [16, 24, 40, 112, 320]
    assert ours.reduction() == theirs.reduction() == [2, 4, 8, 16, 32]
    assert ours.module_name() == ["stages.0", "stages.1", "stages.2", "stages.4", "stages.6"]
    assert ours.channels(3) == theirs.channels(3) and ours.reduction([0, -1]) == theirs.reduction([0, -1])
    assert [{k: d[k] for k in ("num_chs", "reduction", "index")} for d in ours.get_dicts()] == [
        {k: d[k] for k in ("num_chs", "reduction", "index")} for d in theirs.get_dicts()
    ]
    assert ours.get_dicts(keys=["num_chs"], idx=0) == theirs.get_dicts(keys=["num_chs"], idx=0) == {"num_chs": 16}
    # each entry carries timm's keys and archc's own (archc's stage is timm's minus one: timm counts the stem as 0)
    assert len(ours) == 5 and ours[0] == {"num_chs": 16, "reduction": 2, "module": "stages.0", "index": 0,
                                          "stage": 0, "channels": 16, "reduction_per_axis": (2, 2)}
    assert [f["channels"] for f in ours] == ours.channels()


@pytest.mark.parametrize("name", ["efficientnet_b0", "mobilenetv3_large_100", "mixnet_s", "efficientnetv2_s"])
def test_timms_feature_info_class_wraps_the_classifiers_feature_info(name):
    """timm's own FeatureInfo (what timm's features wrappers and test_models.py build) takes the list as timm's
    models' ``feature_info``, and reads from it what timm's model of that name gives."""
    ours = timm.models.FeatureInfo(archc.load(name, resolution=64).feature_info, (0, 1, 2, 3, 4))
    with torch.device("meta"):
        theirs = timm.models.FeatureInfo(timm.create_model(name).feature_info, (0, 1, 2, 3, 4))
    assert ours.channels() == theirs.channels() and ours.reduction() == theirs.reduction()
    assert ours.get_dicts(keys=["num_chs", "reduction", "index"]) == theirs.get_dicts(keys=["num_chs", "reduction", "index"])
    assert [d["stage"] + 1 for d in ours.get_dicts()] == [d["stage"] for d in theirs.get_dicts()]  # the stem is timm's 0


def test_feature_info_of_anisotropic_levels():
    """A per-axis reduction that differs between axes stays a tuple; an isotropic one is timm's int."""
    info = archc.load("efficientnet3d_b0", features_only=True, resolution=(16, 64, 64)).feature_info
    assert info.reduction() == [(1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32)]
    assert info.get("reduction_per_axis", 0) == (1, 2, 2)
    with pytest.raises(TypeError):  # no single number is true of every axis: timm's class refuses, it does not guess
        timm.models.FeatureInfo(info, (0, 1))
    volume = archc.load("efficientnet_b0", dims=3, resolution=32, features_only=True).feature_info
    assert volume.reduction() == [2, 4, 8, 16, 32] and volume.get("reduction_per_axis") == [(r,) * 3 for r in (2, 4, 8, 16, 32)]


def test_features_encoder_has_no_head():
    model = archc_b0(features_only=True)
    with pytest.raises(EmitError, match="features"):
        model.forward_head(torch.randn(1, 320, 2, 2))
    with pytest.raises(EmitError, match="features"):
        model.reset_classifier(10)
    assert not hasattr(model, "num_classes")


def test_data_config_as_timm():
    """timm's data pipeline reads pretrained_cfg: B0 gets exactly timm's B0 preprocessing."""
    ours, theirs = archc_b0(), timm_b0()
    config = resolve_data_config({}, model=ours)
    assert config == resolve_data_config({}, model=theirs)
    image = timm.data.create_transform(**config)(Image.new("RGB", (300, 260)))  # timm's eval transform
    assert image.shape == (3, 224, 224)
    cfg = ours.pretrained_cfg
    assert cfg == ours.default_cfg
    assert cfg["input_size"] == (3, 224, 224) and (cfg["mean"], cfg["std"]) == (IMAGENET_MEAN, IMAGENET_STD)
    assert (cfg["interpolation"], cfg["crop_pct"]) == ("bicubic", 0.875)
    assert (cfg["first_conv"], cfg["classifier"], cfg["num_classes"]) == ("stem.conv", "classifier", 1000)
    modules = dict(ours.named_modules())
    assert isinstance(modules[cfg["first_conv"]], nn.Conv2d) and modules[cfg["classifier"]] is ours.get_classifier()


def test_data_config_of_other_inputs():
    model = archc.load("efficientnet_b0", in_channels=1, resolution=(96, 128), num_classes=2)
    config = resolve_data_config({}, model=model)
    assert config["input_size"] == (1, 96, 128)
    assert config["mean"] == pytest.approx((sum(IMAGENET_MEAN) / 3,)) and config["std"] == pytest.approx((sum(IMAGENET_STD) / 3,))
    volume = archc.load("efficientnet_b0", dims=3, in_channels=4, resolution=32)
    assert volume.pretrained_cfg["input_size"] == (4, 32, 32, 32) and len(volume.pretrained_cfg["mean"]) == 4
    model.reset_classifier(7)
    assert model.pretrained_cfg["num_classes"] == 7


# forward_intermediates and prune_intermediate_layers: timm 1.0's (timm.models.efficientnet.EfficientNet), compared
# with timm's real module of the same name holding the same weights, module by module.

INTERMEDIATE_CALLS = [
    {},  # every level and forward_features' output
    {"indices": 2},  # the last two levels
    {"indices": [0, -1]},
    {"indices": (3, 1)},  # returned in the order they are computed, as timm's
    {"indices": [2], "stop_early": True, "intermediates_only": True},
    {"extra_blocks": True},  # the stem's map and every stage's
    {"indices": [1, 4], "extra_blocks": True, "stop_early": True, "intermediates_only": True},
    {"norm": True, "output_fmt": "NCHW"},
]

# archc's name, timm's, the weights' source (a tf_ model pads as TF does: weights_from="timm_tf")
# (B0 runs in the quick suite; the others, several seconds each, with the slow tests)
TIMM_NAMES = [("efficientnet_b0", "efficientnet_b0", "timm"),
              pytest.param("mobilenetv3_large_100", "mobilenetv3_large_100", "timm", marks=pytest.mark.slow),
              pytest.param("mixnet_s", "mixnet_s", "timm", marks=pytest.mark.slow),
              pytest.param("efficientnetv2_s", "tf_efficientnetv2_s", "timm_tf", marks=pytest.mark.slow)]


_PAIRS = {}


def same_weights(ours: str, theirs: str, source: str, size: int = 64):
    """timm's module ``theirs`` (seeded, calibrated: conftest.timm_peer) and archc's ``ours`` with its weights, module
    by module: fresh copies of a pair made once per module (pruning changes them)."""
    if theirs not in _PAIRS:
        peer = timm_peer(theirs, size)
        _PAIRS[theirs] = archc.load(ours, weights=peer.state_dict(), weights_from=source, resolution=size).eval().set_fast_paths(False), peer
    return tuple(copy.deepcopy(module) for module in _PAIRS[theirs])


def assert_same_intermediates(ours, theirs):
    if isinstance(theirs, tuple):
        assert isinstance(ours, tuple) and len(ours) == 2
        torch.testing.assert_close(ours[0], theirs[0], atol=1e-4, rtol=1e-4)
        ours, theirs = ours[1], theirs[1]
    assert isinstance(ours, list) and len(ours) == len(theirs)
    for mine, peers in zip(ours, theirs):
        assert mine.shape == peers.shape and peers.std() > 1e-2
        torch.testing.assert_close(mine, peers, atol=1e-4, rtol=1e-4)


@pytest.mark.parametrize("ours, theirs, source", TIMM_NAMES)
def test_forward_intermediates_equal_timms(ours, theirs, source):
    model, peer = same_weights(ours, theirs, source)
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        for call in INTERMEDIATE_CALLS:
            assert_same_intermediates(model.forward_intermediates(x, **call), peer.forward_intermediates(x, **call))
        final, maps = model.forward_intermediates(x)
        assert torch.equal(final, model.forward_features(x))  # timm's test_models.py checks this of every model
        assert [m.shape[1] for m in maps] == model.feature_info.channels()


@pytest.mark.parametrize("ours, theirs, source", TIMM_NAMES[:3])
@pytest.mark.parametrize("call", [{}, {"indices": [0, 2]}, {"indices": 3, "prune_head": False}, {"indices": [-1], "prune_head": False},
                                  {"indices": [-1], "prune_head": False, "prune_norm": True}, {"indices": [2, 4], "extra_blocks": True}])
def test_prune_intermediate_layers_as_timm(ours, theirs, source, call, tmp_path):
    model, peer = same_weights(ours, theirs, source)
    taken = model.prune_intermediate_layers(**call)
    assert taken == peer.prune_intermediate_layers(**call)
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in peer.parameters())  # the same layers went
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        wanted = {"indices": taken, "intermediates_only": True, "extra_blocks": call.get("extra_blocks", False)}
        assert_same_intermediates(model.forward_intermediates(x, **wanted), peer.forward_intermediates(x, **wanted))
    # the Plan follows the module: a features encoder of the levels kept, counted as it now is
    assert archc.analyze(model.plan).params == sum(p.numel() for p in model.parameters())
    if model.plan.head is None:
        assert len(model.feature_info) == len(model.plan.features) and [m.shape[1] for m in model(x)] == model.feature_info.channels()
        with pytest.raises(EmitError, match="prune_intermediate_layers"):
            archc.save(model, tmp_path / "pruned.safetensors")
        assert not (tmp_path / "pruned.safetensors").exists()


def test_timms_feature_getter_wraps_an_archc_classifier():
    """timm's FeatureGetterNet (what create_model(..., features_only=True, feature_cls="getter") builds around a model)
    prunes an archc classifier with prune_intermediate_layers and reads it with forward_intermediates."""
    from timm.models._features import FeatureGetterNet

    model, peer = same_weights("efficientnet_b0", "efficientnet_b0", "timm")
    ours, theirs = FeatureGetterNet(model, out_indices=(1, 2, 4)), FeatureGetterNet(peer, out_indices=(1, 2, 4))
    assert ours.feature_info.channels() == theirs.feature_info.channels() == [24, 40, 320]
    assert ours.feature_info.reduction() == theirs.feature_info.reduction() == [4, 8, 32]
    x = torch.randn(2, 3, 64, 64, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        assert_same_intermediates(ours(x), theirs(x))


@pytest.mark.parametrize("dims", [1, 3])
def test_forward_intermediates_in_1d_and_3d(dims):
    """Indices count feature levels in every dims; each map is what the features encoder returns for that level."""
    size = 32
    model = archc.load("efficientnet_b0", dims=dims, resolution=size, seed=0).eval()
    encoder = archc.load("efficientnet_b0", dims=dims, resolution=size, seed=0, features_only=True).eval()
    x = torch.randn(1, 3, *(size,) * dims)
    with torch.no_grad():
        final, maps = model.forward_intermediates(x, indices=[1, -1])
        levels = encoder(x)
        assert torch.equal(final, model.forward_features(x))
        assert [m.shape for m in maps] == [(1, 24, *(size // 4,) * dims), (1, 320, *(1,) * dims)]
        assert torch.equal(maps[0], levels[1]) and torch.equal(maps[1], levels[4])
        assert all(torch.equal(a, b) for a, b in zip(encoder.forward_intermediates(x, intermediates_only=True), levels))


@pytest.mark.parametrize("call, message", [
    ({"indices": 6}, "forward_intermediates: indices=6 asks for the last 6 maps; this network has 5 (1 to 5)"),
    ({"indices": 0}, "forward_intermediates: indices=0 asks for the last 0 maps; this network has 5 (1 to 5)"),
    ({"indices": [0, 5]}, "forward_intermediates: index 5 is out of range; this network has 5 maps (0 to 4, or -5 to -1)"),
    ({"indices": [-6]}, "forward_intermediates: index -6 is out of range; this network has 5 maps (0 to 4, or -5 to -1)"),
    ({"indices": [8], "extra_blocks": True}, "forward_intermediates: index 8 is out of range; this network has 8 maps (0 to 7, or -8 to -1)"),
    ({"indices": []}, "forward_intermediates: indices must be None, a positive int (the last n maps) or a non-empty list of ints, got []"),
    ({"indices": "1"}, "forward_intermediates: indices must be None, a positive int (the last n maps) or a non-empty list of ints, got '1'"),
    ({"output_fmt": "NHWC"}, "forward_intermediates: output_fmt='NHWC'; archc returns channels first, timm's 'NCHW' (in 1D and 3D too)"),
])
def test_forward_intermediates_refuses_bad_indices_with_a_value_error(call, message):
    model = archc.load("efficientnet_b0", resolution=32, seed=0)
    with pytest.raises(ValueError) as raised:  # timm's callers catch bad arguments as ValueError
        model.forward_intermediates(torch.randn(1, 3, 32, 32), **call)
    assert isinstance(raised.value, archc.ArgumentError) and str(raised.value) == message


def test_a_unet_has_no_intermediates_to_prune():
    model = archc.load("efficientnet_b0", resolution=32, overrides={"decoder.type": "unet"}, seed=0)
    for method in (model.forward_intermediates, model.prune_intermediate_layers):
        with pytest.raises(EmitError, match="U-Net"):
            method(torch.randn(1, 3, 32, 32)) if method == model.forward_intermediates else method()


@pytest.mark.parametrize("in_chans", [1, 3, 4])
def test_in_chans_as_timm(in_chans):
    with torch.device("meta"):
        peer = timm.create_model("efficientnet_b0", in_chans=in_chans)
    model = archc.load("efficientnet_b0", in_channels=in_chans, resolution=32)
    assert model.in_chans == peer.in_chans == in_chans == model.stem.conv.in_channels
    assert archc.load("efficientnet_b0", dims=3, in_channels=in_chans, resolution=16, features_only=True).in_chans == in_chans


def test_load_inside_the_meta_device_allocates_nothing():
    """As timm.create_model and torch's own modules: under ``with torch.device("meta")`` the module is laid out on
    the meta device (shapes only), seeded or not, so a 66M-parameter B7 costs no memory and no init."""
    with torch.device("meta"):
        peer = timm.create_model("efficientnet_b7")
        model = archc.load("efficientnet_b7", seed=0)
        encoder = archc.load("efficientnet_b0", dims=3, features_only=True)
    for module in (peer, model, encoder):
        assert {t.device.type for t in (*module.parameters(), *module.buffers())} == {"meta"}
    assert sum(p.numel() for p in model.parameters()) == sum(p.numel() for p in peer.parameters()) == TIMM_PARAMS["efficientnet_b7"]
    # outside it, the CPU as before, with archc's seeded init
    assert torch.equal(archc.load("efficientnet_b0", resolution=32, seed=0).stem.conv.weight,
                       archc.load("efficientnet_b0", resolution=32, seed=0).stem.conv.weight)


def test_archc_errors_are_value_errors():
    """Bad arguments raise ValueError, as MONAI's and timm's tests (and code written for them) expect."""
    with pytest.raises(ValueError, match="seed"):
        archc.load("efficientnet_b0", seed=-1)
    with pytest.raises(ValueError, match="num_classes"):
        archc_b0().reset_classifier(-1)
    with pytest.raises(ValueError, match="phi"):
        archc.lower("efficientnet_b0", phi=float("nan"))
    assert all(issubclass(error, ValueError) for error in (archc.errors.ArchcError, archc.errors.SpecError, archc.errors.ScalingError,
                                                           archc.errors.LoweringError, EmitError, archc.errors.CheckpointError))


@pytest.mark.parametrize("name, architecture", [("resnet50.a1_in1k", "resnet50"), ("timm/efficientnet_b0.ra_in1k", "efficientnet_b0"),
                                                ("hf-hub:timm/resnet18.a1_in1k", "resnet18")])
def test_a_timm_name_with_a_pretrained_tag_names_the_architecture(name, architecture):
    """timm's model names carry a pretrained tag and a hub prefix (timm.create_model takes them); archc builds architectures
    and downloads nothing, so it says which name to use instead of failing to find the file."""
    assert timm.models.get_arch_name(name.removeprefix("hf-hub:").removeprefix("timm/")) == architecture  # timm's own split
    with pytest.raises(archc.errors.SpecError) as caught:
        archc.lower(name)
    assert str(caught.value) == (f"{name}: a timm model name with its hub prefix or pretrained tag; archc builds the architecture "
                                 f"by its name, {architecture!r} (pretrained weights are yours to pass: weights=..., weights_from='timm')")
