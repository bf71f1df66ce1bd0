"""timm's own model checks, run on archc models.

Ported from timm's ``tests/test_models.py`` (huggingface/pytorch-image-models at commit aa4b5850c154, version
1.0.29.dev0; timm's wheel does not ship its tests) and run against the installed timm (1.0.31, whose
``FeatureInfo`` and ``FeatureGetterNet`` they use): ``test_model_forward``, ``test_model_backward``,
``test_model_default_cfgs``, ``test_model_forward_features``, ``test_model_forward_intermediates_features`` and
``test_model_forward_intermediates``, with ``create_model(name, ...)`` replaced by ``archc.load(name, ...)``.
Each check is kept as timm wrote it; where archc differs, the comment at that line says how and why. The
TorchScript and FX checks are in tests/test_scripting.py.

timm's checks are 2D (``input_size[-2:]``, two spatial axes); here they run over every spatial axis, and on a 3D
network too.
"""

import math

import pytest
import torch

import archc

timm = pytest.importorskip("timm")
from timm.models._features import FeatureGetterNet  # noqa: E402

# (archc's name, build arguments): timm's names, and one volume. B0 runs in the quick suite, the rest with the slow tests.
MODELS = [
    pytest.param("efficientnet_b0", {}, id="efficientnet_b0"),
    pytest.param("mobilenetv3_large_100", {}, id="mobilenetv3_large_100", marks=pytest.mark.slow),
    pytest.param("mixnet_s", {}, id="mixnet_s", marks=pytest.mark.slow),
    pytest.param("tf_efficientnetv2_s", {}, id="tf_efficientnetv2_s", marks=pytest.mark.slow),
    pytest.param("efficientnet_b0", {"dims": 3, "resolution": 64}, id="efficientnet_b0-3d", marks=pytest.mark.slow),
]

# timm's sizes (test_models.py)
TARGET_FWD_SIZE = MAX_FWD_SIZE = 384
TARGET_BWD_SIZE = 128
MAX_BWD_SIZE = 320
MAX_FWD_OUT_SIZE = 448
TARGET_FFEAT_SIZE = 96
MAX_FFEAT_SIZE = 256


def create_model(name, args, **kwargs):
    """timm's ``create_model(name, pretrained=False, **kwargs)``: archc.load, seeded. timm's ``features_only`` is
    archc's; ``num_classes`` is the same argument."""
    return archc.load(name, seed=0, **args, **kwargs)


def _get_input_size(model, target=None):
    """timm's helper, for a model (archc's pretrained_cfg has no fixed or minimum input size)."""
    input_size = model.default_cfg["input_size"]
    assert input_size is not None
    if target and max(input_size) > target:
        input_size = tuple([min(x, target) for x in input_size])
    return input_size


@pytest.mark.slow  # a forward (and backward) at the full input size: seconds
@pytest.mark.parametrize("name, args", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward(name, args, batch_size):
    """Run a single forward pass with each model"""
    model = create_model(name, args)
    model.eval()

    input_size = _get_input_size(model, target=TARGET_FWD_SIZE)
    if max(input_size) > MAX_FWD_SIZE:
        pytest.skip("Fixed input size model > limit.")
    inputs = torch.randn((batch_size, *input_size))
    outputs = model(inputs)

    assert outputs.shape[0] == batch_size
    assert not torch.isnan(outputs).any(), "Output included NaNs"

    # Test that grad-checkpointing, if supported, doesn't cause model failures or change in output
    model.set_grad_checkpointing()  # archc supports it: no try/except
    outputs2 = model(inputs)
    assert torch.allclose(outputs, outputs2, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.slow  # a forward (and backward) at the full input size: seconds
@pytest.mark.parametrize("name, args", MODELS)
@pytest.mark.parametrize("batch_size", [2])
def test_model_backward(name, args, batch_size):
    """Run a single forward pass with each model"""
    model = create_model(name, args, num_classes=42)
    input_size = _get_input_size(model, target=TARGET_BWD_SIZE)
    if max(input_size) > MAX_BWD_SIZE:
        pytest.skip("Fixed input size model > limit.")

    num_params = sum([x.numel() for x in model.parameters()])
    model.train()

    inputs = torch.randn((batch_size, *input_size))
    outputs = model(inputs)
    outputs.mean().backward()
    for n, x in model.named_parameters():
        assert x.grad is not None, f"No gradient for {n}"
    num_grad = sum([x.grad.numel() for x in model.parameters() if x.grad is not None])

    assert outputs.shape[-1] == 42
    assert num_params == num_grad, "Some parameters are missing gradients"
    assert not torch.isnan(outputs).any(), "Output included NaNs"


@pytest.mark.parametrize("name, args", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_default_cfgs(name, args, batch_size):
    """Run a single forward pass with each model"""
    model = create_model(name, args)
    model.eval()
    assert model.num_classes >= 0
    assert model.num_features > 0
    assert model.head_hidden_size > 0
    state_dict = model.state_dict()
    cfg = model.default_cfg

    pool_size = cfg["pool_size"]
    input_size = model.default_cfg["input_size"]
    spatial_axis = tuple(range(2, 2 + len(pool_size)))  # timm: get_spatial_dim('NCHW'), two axes; here every one
    feat_axis = 1

    if all([x <= MAX_FWD_OUT_SIZE for x in input_size]):
        # output sizes only checked if default res <= 448 * 448 to keep resource down
        input_size = tuple([min(x, MAX_FWD_OUT_SIZE) for x in input_size])
        input_tensor = torch.randn((batch_size, *input_size))

        # test forward_features (always unpooled) & forward_head w/ pre_logits
        outputs = model.forward_features(input_tensor)
        outputs_pre = model.forward_head(outputs, pre_logits=True)
        assert all(outputs.shape[axis] == size for axis, size in zip(spatial_axis, pool_size)), f"unpooled feature shape {outputs.shape} != config"
        assert outputs.shape[feat_axis] == model.num_features, f"unpooled feature dim {outputs.shape[feat_axis]} != model.num_features {model.num_features}"
        assert outputs_pre.shape[1] == model.head_hidden_size, f"pre_logits feature dim {outputs_pre.shape[1]} != model.head_hidden_size {model.head_hidden_size}"

        # test forward after deleting the classifier, output should be poooled, size(-1) == model.num_features
        model.reset_classifier(0)
        assert model.num_classes == 0, f"Expected num_classes to be 0 after reset_classifier(0), but got {model.num_classes}"
        outputs = model.forward(input_tensor)
        assert len(outputs.shape) == 2
        assert outputs.shape[1] == model.head_hidden_size, f"feature dim w/ removed classifier {outputs.shape[1]} != model.head_hidden_size {model.head_hidden_size}"
        assert outputs.shape == outputs_pre.shape, f"output shape of pre_logits {outputs_pre.shape} does not match reset_head(0) {outputs.shape}"

        # Not ported: timm's reset_classifier(0, '') and create_model(num_classes=0, global_pool='') (no pooling).
        # archc's head pools by average only; global_pool='' is refused with a ValueError, not ignored, and
        # forward_features (checked above) is the unpooled map.
        with pytest.raises(ValueError, match="global_pool"):
            model.reset_classifier(0, "")

    # check classifier name matches default_cfg
    if cfg.get("num_classes", None):
        classifier = cfg["classifier"]
        if not isinstance(classifier, (tuple, list)):
            classifier = classifier,
        for c in classifier:
            assert c + ".weight" in state_dict.keys(), f"{c} not in model params"

    # check first conv(s) names match default_cfg
    first_conv = cfg["first_conv"]
    if isinstance(first_conv, str):
        first_conv = (first_conv,)
    assert isinstance(first_conv, (tuple, list))
    for fc in first_conv:
        assert fc + ".weight" in state_dict.keys(), f"{fc} not in model params"


def check_feature_maps(expected_channels, expected_reduction, outputs, input_size, batch_size):
    """The loop timm's three feature tests share, over every spatial axis (timm's: ``input_size[-2:]``)."""
    assert len(expected_channels) == len(outputs)
    spatial_size = input_size[1:]
    for e, r, o in zip(expected_channels, expected_reduction, outputs):
        assert e == o.shape[1]
        for axis, size in enumerate(spatial_size):
            assert o.shape[2 + axis] <= math.ceil(size / r) + 1
        assert o.shape[0] == batch_size
        assert not torch.isnan(o).any()


@pytest.mark.parametrize("name, args", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward_features(name, args, batch_size):
    """Run a single forward pass with each model in feature extraction mode"""
    model = create_model(name, args, features_only=True)
    model.eval()
    expected_channels = model.feature_info.channels()
    expected_reduction = model.feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 default feat levels

    input_size = _get_input_size(model, target=TARGET_FFEAT_SIZE)
    if max(input_size) > MAX_FFEAT_SIZE:
        pytest.skip("Fixed input size model > limit.")
    outputs = model(torch.randn((batch_size, *input_size)))
    check_feature_maps(expected_channels, expected_reduction, outputs, input_size, batch_size)


@pytest.mark.parametrize("name, args", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward_intermediates_features(name, args, batch_size):
    """Run a single forward pass with each model in feature extraction mode"""
    # timm: create_model(name, features_only=True, feature_cls='getter'), which wraps the model in its
    # FeatureGetterNet with the default out_indices of features_only; here timm's class wraps archc's classifier.
    model = FeatureGetterNet(create_model(name, args), out_indices=(0, 1, 2, 3, 4))
    model.eval()
    expected_channels = model.feature_info.channels()
    expected_reduction = model.feature_info.reduction()

    input_size = _get_input_size(model.model, target=TARGET_FFEAT_SIZE)
    if max(input_size) > MAX_FFEAT_SIZE:
        pytest.skip("Fixed input size model > limit.")
    outputs = model(torch.randn((batch_size, *input_size)))
    check_feature_maps(expected_channels, expected_reduction, outputs, input_size, batch_size)


@pytest.mark.parametrize("name, args", MODELS)
@pytest.mark.parametrize("batch_size", [1])
def test_model_forward_intermediates(name, args, batch_size):
    """Run a single forward pass with each model in feature extraction mode"""
    model = create_model(name, args)
    model.eval()
    feature_info = timm.models.FeatureInfo(model.feature_info, len(model.feature_info))
    expected_channels = feature_info.channels()
    expected_reduction = feature_info.reduction()
    assert len(expected_channels) >= 3  # all models here should have at least 3 feature levels

    input_size = _get_input_size(model, target=TARGET_FFEAT_SIZE)
    if max(input_size) > MAX_FFEAT_SIZE:
        pytest.skip("Fixed input size model > limit.")
    output_fmt = "NCHW"  # NOTE output_fmt determined by forward_intermediates() arg, not model attribute

    inpt = torch.randn((batch_size, *input_size))
    output, intermediates = model.forward_intermediates(
        inpt,
        output_fmt=output_fmt,
    )
    check_feature_maps(expected_channels, expected_reduction, intermediates, input_size, batch_size)

    output2 = model.forward_features(inpt)
    assert torch.allclose(output, output2)

    # Test that grad-checkpointing, if supported
    model.set_grad_checkpointing()  # archc supports it: no try/except
    output3, _ = model.forward_intermediates(
        inpt,
        output_fmt=output_fmt,
    )
    assert torch.allclose(output, output3, rtol=1e-4, atol=1e-5), "Output does not match"


@pytest.mark.parametrize("name, args", MODELS)
def test_model_in_chans(name, args):
    """timm's test_model_load_pretrained builds every model with in_chans=1 (and pretrained weights, which archc has
    none to download): the attribute, and a forward pass with one channel."""
    model = create_model(name, args, in_channels=1, num_classes=5).eval()
    assert model.in_chans == 1 and model.default_cfg["input_size"][0] == 1
    with torch.no_grad():
        assert model(torch.randn(1, *_get_input_size(model, target=64))).shape == (1, 5)
