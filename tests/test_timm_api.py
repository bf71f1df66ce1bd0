"""timm's model API on archc networks: the same training code takes a timm model or an archc one.

Every helper below is written against timm's conventions and run on ``timm.create_model(...)`` as well, so a
test fails if archc drifts from what timm's own models do.
"""

import pytest
import torch
from torch import nn

import archc
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
    assert archc.analyze(model.plan).params == sum(p.numel() for p in model.parameters()) == 5_288_548 - 1280 * 990 - 990
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
    with pytest.raises(EmitError, match="global_pool"):
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
    # still the sequence of archc's dicts it was
    assert len(ours) == 5 and ours[0] == {"stage": 0, "module": "stages.0", "channels": 16, "reduction": (2, 2)}
    assert [f["channels"] for f in ours] == ours.channels()


def test_feature_info_of_anisotropic_levels():
    """A per-axis reduction that differs between axes stays a tuple; an isotropic one is timm's int."""
    info = archc.load("efficientnet3d_b0", features_only=True, resolution=(16, 64, 64)).feature_info
    assert info.reduction() == [(1, 2, 2), (1, 4, 4), (2, 8, 8), (4, 16, 16), (8, 32, 32)]
    assert archc.load("efficientnet_b0", dims=3, resolution=32, features_only=True).feature_info.reduction() == [2, 4, 8, 16, 32]


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
