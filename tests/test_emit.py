
import pytest
import torch
from conftest import module_params, run_python
from torch import nn

import archc


@pytest.mark.parametrize("dims, size", [(1, 64), (2, 64), (3, 32)])
def test_forward_backward_every_dims(b0_spec, dims, size):
    model = archc.load(b0_spec, dims=dims, in_channels=2, num_classes=5, resolution=size, seed=0)
    x = torch.randn(2, 2, *(size,) * dims)
    out = model(x)
    assert out.shape == (2, 5)
    out.square().mean().backward()
    grads = [p.grad for p in model.parameters()]
    assert all(g is not None and torch.isfinite(g).all() for g in grads)
    assert sum(g.abs().sum() for g in grads) > 0


def test_3d_model_is_3d_throughout(b0_spec):
    model = archc.load(b0_spec, dims=3, in_channels=1, num_classes=2, seed=0)
    convs = [m for m in model.modules() if isinstance(m, nn.modules.conv._ConvNd)]
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    assert convs and all(isinstance(m, nn.Conv3d) for m in convs)
    assert norms and all(type(m) is nn.BatchNorm3d for m in norms)
    assert model.stages[2][0].conv_dw.kernel_size == (5, 5, 5)


def test_module_exposes_its_plan(b0_spec):
    model = archc.load(b0_spec, preset="b1", seed=0)
    assert model.plan == archc.lower(b0_spec, preset="b1")


def test_state_dict_keys_are_stable_roles(b0_spec):
    keys = set(archc.load(b0_spec, seed=0).state_dict())
    # Checkpoints depend on these names: changing one is a breaking change.
    for key in [
        "stem.conv.weight", "stem.bn.running_var",
        "stages.0.0.conv_dw.weight", "stages.0.0.se.conv_reduce.bias", "stages.0.0.conv_pwl.weight", "stages.0.0.bn3.weight",
        "stages.1.0.conv_pw.weight", "stages.1.0.bn1.weight", "stages.1.0.bn2.weight", "stages.1.0.se.conv_expand.weight",
        "head.conv.weight", "head.bn.bias", "classifier.weight", "classifier.bias",
    ]:
        assert key in keys, key
    assert not any(k.startswith("stages.0.0.conv_pw.") for k in keys)  # expand ratio 1: no expand conv
    assert len(keys) == 360


def test_same_seed_gives_bit_identical_weights(b0_spec):
    a = archc.load(b0_spec, seed=7).state_dict()
    b = archc.load(b0_spec, seed=7).state_dict()
    c = archc.load(b0_spec, seed=8).state_dict()
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["stem.conv.weight"], c["stem.conv.weight"])


@pytest.mark.slow
def test_same_seed_across_processes(b0_spec):
    code = (
        "import archc, hashlib; m = archc.load('specs/efficientnet_b0.yaml', seed=3); h = hashlib.sha256()\n"
        "for k, v in m.state_dict().items(): h.update(k.encode()); h.update(v.numpy().tobytes())\n"
        "print(h.hexdigest())"
    )
    digests = {run_python(code, check=True).stdout for _ in range(2)}
    assert len(digests) == 1


def test_initialisation_follows_tf_and_timm(b0_spec):
    model = archc.load(b0_spec, preset="b3", seed=0)
    block = model.stages[5][0]
    # Depthwise 5x5 conv, fan_out = 25 * C / C = 25: std sqrt(2 / 25), not torch's sqrt(2 / (25 * C)).
    assert block.conv_dw.weight.std().item() == pytest.approx((2 / 25) ** 0.5, rel=0.05)
    pw = block.conv_pw.weight
    assert pw.std().item() == pytest.approx((2 / pw.shape[0]) ** 0.5, rel=0.05)
    bound = 1 / model.classifier.out_features**0.5
    assert model.classifier.weight.abs().max() <= bound and model.classifier.bias.abs().sum() == 0
    assert torch.all(block.bn2.weight == 1) and torch.all(block.bn2.running_var == 1)


def test_se_after_project_and_no_se():
    spec = archc.spec.parse_spec("name: s\nse: {placement: after_project}\nstages: [{channels: 16, expand: 4}, {channels: 16, se: 0}]\n")
    model = archc.load(spec, resolution=32, seed=0)
    first, second = model.stages[0][0], model.stages[1][0]
    # The SE gates the projected output: it comes after conv_pwl's norm, on its 16 channels.
    assert first.steps == ("conv_pw", "bn1", "act1", "conv_dw", "bn2", "act2", "conv_pwl", "bn3", "se")
    assert first.se.conv_reduce.in_channels == 16
    assert "se" not in second.steps and not hasattr(second, "se") and second.has_residual
    assert model(torch.randn(1, 3, 32, 32)).shape == (1, 1000)
    assert archc.analyze(model.plan).params == sum(p.numel() for p in model.parameters())  # analysis counts by formula


def test_drop_path_is_identity_in_eval_and_random_in_training(b0_spec):
    from archc.emit.blocks import DropPath

    model = archc.load(b0_spec, seed=0)
    assert model.stages[5][3].drop_path.rate == pytest.approx(0.2 * 14 / 16)  # block 14 of 16
    drop = DropPath(0.25)
    x = torch.ones(4000, 2, 2)
    drop.eval()
    assert drop(x) is x
    drop.train()
    torch.manual_seed(0)
    y = drop(x)
    dropped = (y == 0).all(dim=(1, 2))
    assert dropped.float().mean().item() == pytest.approx(0.25, abs=0.03)  # whole samples are dropped
    assert torch.allclose(y[~dropped], torch.full_like(y[~dropped], 1 / 0.75))  # the rest rescaled


def test_num_classes_zero_gives_pooled_features(b0_spec):
    model = archc.load(b0_spec, num_classes=0, resolution=64, seed=0).eval()
    assert model(torch.randn(2, 3, 64, 64)).shape == (2, 1280)


def test_no_classifier_width_mismatch_between_spec_kinds():
    # Activations and gates from the table all build.
    for act in ("silu", "relu", "relu6", "hardswish", "gelu", "mish", "identity"):
        spec = archc.spec.parse_spec(f"name: a\nactivation: {act}\nse: {{gate: hardsigmoid}}\nstages: [{{channels: 8}}]\n")
        model = archc.load(spec, resolution=16, seed=0)
        assert torch.isfinite(model(torch.randn(1, 3, 16, 16))).all()


def test_every_closed_set_has_exactly_its_emitter_table():
    """A value the spec accepts always has a module, and the tables hold nothing the spec cannot say."""
    from archc import ir
    from archc.emit.ops import ACTIVATION, GATE
    from archc.kinds.norms import NORMS

    assert set(ACTIVATION) == set(ir.ACTIVATIONS)
    assert set(GATE) == set(ir.GATES)
    for norm in NORMS:  # each norm builds in every dimensionality
        for dims in (1, 2, 3):
            plan = archc.lower("efficientnet_b0", {"norm.type": norm, "norm.groups": 8}, dims=dims, resolution=32)
            assert module_params(plan) == archc.analyze(plan).params



@pytest.mark.parametrize("dims, kwargs", [(1, {}), (2, {"features_only": True}), (3, {"overrides": ["decoder.type=unet"]})])
def test_an_input_of_the_wrong_rank_or_channels_is_an_archc_error(dims, kwargs):
    """Every entry point (forward, forward_features, forward_pyramid; a classifier, a features encoder, a U-Net), in
    training and in inference, names the input it expected, before any layer sees it."""
    from archc.errors import EmitError

    model = archc.load("efficientnet_b0", dims=dims, in_channels=1, resolution=32, seed=0, **kwargs)
    axes = {1: "L", 2: "H, W", 3: "D, H, W"}[dims]
    wrong = [torch.randn(2, 1, *(32,) * (dims + 1)), torch.randn(2, 3, *(32,) * dims)]
    if dims > 1:
        wrong.append(torch.randn(2, 1, *(32,) * (dims - 1)))
    for entry in ("forward", "forward_features", "forward_pyramid"):
        for x in wrong:
            for mode, grad in (("train", True), ("eval", False)):
                with torch.set_grad_enabled(grad), pytest.raises(EmitError) as error:
                    getattr(model.train(mode == "train"), entry)(x)
                assert str(error.value) == f"expected input of shape (N, C, {axes}) with C=1, got {tuple(x.shape)}"


def test_channels_last_on_a_1d_model_is_an_archc_error():
    model = archc.load("efficientnet_b0", dims=1, resolution=32, seed=0)
    with pytest.raises(archc.ArgumentError, match="^channels_last is a memory order of 2D and 3D tensors; a 1D model has none$"):
        model.set_channels_last()
    assert model.memory_format == torch.contiguous_format
    assert archc.load("efficientnet_b0", dims=3, resolution=32, seed=0).set_channels_last().memory_format == torch.channels_last_3d
