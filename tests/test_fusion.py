"""The fast paths of a conv unit (archc.emit.fusion) against torch's own modules run one after the other:
batch norm folded into the conv for inference, in channels-last layout; norm and activation as one Function in
training. Outputs, gradients and running statistics equal to float32 rounding, for every kernel, stride and
padding the family uses, in 1D, 2D and 3D; and wherever a fast path would be visible (hooks, other norms,
mixed precision), the modules."""

import collections
import copy
import pickle

import pytest
import timm
import torch
from conftest import TINY3D, calibrate_norms
from torch import nn

import archc
from archc import analysis, ir
from archc.emit import fusion
from archc.emit.ops import ACTIVATION, LayerFactory


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    """Within ``rel`` of the expected tensor's largest value (float32 rounding, summed in another order)."""
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= rel * expected.abs().max(), (actual - expected).abs().max()


def _unit(dims: int, c_in: int, c_out: int, kernel, stride, padding: str, groups: int = 1, act: str = "silu", momentum=0.1):
    """conv, batch norm and activation as the emitter makes them, the norm with non-trivial statistics and affine."""
    layers = LayerFactory(dims, ir.Norm("batch", 1e-3, momentum, 1), padding)
    conv, norm, activation = layers.conv(c_in, c_out, kernel, stride, groups=groups), layers.norm(c_out), layers.act(act)
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        conv.weight.normal_(0, 0.3, generator=generator)
        norm.weight.uniform_(0.5, 1.5, generator=generator)
        norm.bias.normal_(0, 0.5, generator=generator)
        norm.running_mean.normal_(0, 1, generator=generator)
        norm.running_var.uniform_(0.5, 2.0, generator=generator)
    return conv, norm, activation


def _reference(x, conv, norm, act):
    return act(norm(conv(x)))  # torch's modules, one after the other


# Every kernel, stride and padding the EfficientNet family uses: 1x1 expansions, 3x3 to 7x7 depthwise convs,
# anisotropic kernels of thin-slab volumes, TF "same" padding; dense and depthwise.
CASES = [(1, 1, "symmetric", 1), (3, 1, "symmetric", 1), (3, 2, "symmetric", 16), (5, 2, "same", 16), (7, 1, "same", 16),
         ((1, 3, 3), (1, 2, 2), "symmetric", 16), ((3, 5, 5), 1, "same", 1), (3, 2, "same", 1)]


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kernel, stride, padding, groups", CASES)
def test_inference_folds_the_norm_into_the_conv(dims, kernel, stride, padding, groups):
    kernel = kernel[-dims:] if isinstance(kernel, tuple) else kernel
    stride = stride[-dims:] if isinstance(stride, tuple) else stride
    conv, norm, act = _unit(dims, 16, 16, kernel, stride, padding, groups)
    conv.eval(), norm.eval()
    x = torch.randn(2, 16, *(11, 12, 9)[:dims])
    with torch.no_grad():
        expected = _reference(x, conv, norm, act)
        _close(fusion.conv_norm_act(x, conv, norm, act), expected)
        channels_last = x.to(memory_format=fusion.inference_layout(x))  # as Network runs inference
        _close(fusion.conv_norm_act(channels_last, conv, norm, act), expected)


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("act", ["silu", "hardswish", "mish", "gelu", "relu"])
@pytest.mark.parametrize("kernel, stride, padding, groups", [CASES[0], CASES[2], CASES[3], CASES[5]])
def test_training_equals_the_modules(dims, act, kernel, stride, padding, groups):
    """Outputs, every gradient, the running statistics and the batch count, as the modules give them."""
    kernel = kernel[-dims:] if isinstance(kernel, tuple) else kernel
    stride = stride[-dims:] if isinstance(stride, tuple) else stride
    unit = _unit(dims, 16, 16, kernel, stride, padding, groups, act)
    twin = copy.deepcopy(unit)
    x = torch.randn(2, 16, *(11, 12, 9)[:dims], requires_grad=True)
    results = []
    for run, (conv, norm, activation) in ((fusion.conv_norm_act, unit), (_reference, twin)):
        out = run(x, conv, norm, activation)
        (grad_x,) = torch.autograd.grad(out.square().sum(), x, retain_graph=True)
        out.square().sum().backward()
        results.append((out, grad_x, conv.weight.grad, norm.weight.grad, norm.bias.grad, norm.running_mean, norm.running_var))
        assert norm.num_batches_tracked == 1
    for fused, plain in zip(*results):
        _close(fused, plain)


def test_a_cumulative_average_counts_batches_as_batch_norm_does():
    unit = _unit(2, 8, 8, 3, 1, "symmetric", momentum=None)
    twin = copy.deepcopy(unit)
    for step in range(3):
        x = (torch.randn(4, 8, 6, 6) * (step + 1)).requires_grad_()
        fusion.conv_norm_act(x, *unit).sum().backward()
        _reference(x, *twin).sum().backward()
    _close(unit[1].running_mean, twin[1].running_mean)
    _close(unit[1].running_var, twin[1].running_var)


def test_training_keeps_one_tensor_fewer_per_unit():
    """The norm's output (copied by the in-place SiLU) is not kept; everything else autograd keeps is."""
    conv, norm, act = _unit(3, 8, 16, 3, 1, "symmetric")

    def kept(run):
        storages = {}

        def pack(t):
            storages[t.untyped_storage().data_ptr()] = t.untyped_storage().nbytes()
            return t

        x = torch.randn(2, 8, 8, 8, 8, requires_grad=True)
        with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
            out = run(x, conv, norm, act)
        return sum(storages.values()), out.numel() * 4

    (plain, size), (fused, _) = kept(_reference), kept(fusion.conv_norm_act)
    assert size <= plain - fused < size + 1024  # one tensor of the output's size, and the batch's mean and deviation


def test_the_analysis_knows_which_norm_outputs_are_recomputed():
    recomputed = {name for name, make in ACTIVATION.items() if type(make()) in fusion.INPUT_BACKWARD}
    assert analysis.RECOMPUTED_NORM_OUTPUT == recomputed == {"silu", "hardswish", "mish", "gelu"}


# A classifier in each dimensionality (hard swish: MobileNetV3; mixed kernels: MixNet, whose mixed convs are
# not folded), a features encoder and a U-Net.
NETWORKS = [("efficientnet_b0", dict(dims=2, resolution=48)), ("efficientnet_b0", dict(dims=3, in_channels=1, resolution=24)),
            ("efficientnet_b0", dict(dims=1, resolution=96)), ("mobilenetv3_large_100", dict(resolution=48)),
            ("mixnet_s", dict(resolution=48)), ("efficientnet_b0", dict(features_only=True, resolution=48)),
            (str(TINY3D), dict(overrides=["decoder.type=unet"], resolution=(12, 16, 16)))]


@pytest.mark.parametrize("name, kwargs", NETWORKS)
def test_networks_infer_as_module_by_module(name, kwargs):
    """Inference by default (folded, channels-last) computes what the modules run one by one in the ordinary layout
    compute, and the outputs come back in the ordinary layout. Each unit's float32 rounding (1e-5, above) grows
    through a calibrated random network, whose activations grow from stage to stage, by up to 1e-3 of the largest
    output for the modules themselves (1D and 3D B0, measured against float64): so the fast paths' output is held
    to the modules' own distance from the float64 result, not to a fixed figure that some calibrations exceed on
    either path (the fast paths agree with the modules to 1e-12 in float64)."""
    model = archc.load(name, seed=0, **kwargs)
    calibrate_norms(model, (model.plan.in_channels, *model.plan.resolution))
    x = torch.randn(2, model.plan.in_channels, *model.plan.resolution, generator=torch.Generator().manual_seed(1))
    with torch.no_grad():
        fast, plain = model(x), copy.deepcopy(model).set_fast_paths(False)(x)
        exact = copy.deepcopy(model).double().set_fast_paths(False)(x.double())
    for a, b, reference in zip(*(y if isinstance(y, list) else [y] for y in (fast, plain, exact)), strict=True):
        assert b.std() > 1e-2 and a.is_contiguous()
        assert (a.double() - reference).abs().max() <= 4 * (b.double() - reference).abs().max() + 1e-5 * reference.abs().max()


def test_channels_last_models_answer_in_channels_last():
    model = archc.load("efficientnet_b0", features_only=True, resolution=64, seed=0).set_channels_last().eval()
    with torch.no_grad():
        maps = model(torch.randn(1, 3, 64, 64))  # the last map 2x2: no layout is both
    assert all(m.is_contiguous(memory_format=torch.channels_last) and not m.is_contiguous() for m in maps)


def test_hooks_see_their_modules_run():
    """A hook on a norm (feature extraction, statistics) still sees it run: that unit takes the modules."""
    model = archc.load("efficientnet_b0", resolution=32, seed=0).eval()
    seen = []
    model.stages[1][0].bn1.register_forward_hook(lambda module, inputs, output: seen.append(output.shape))
    with torch.no_grad():
        model(torch.randn(1, 3, 32, 32))
    model.train()(torch.randn(2, 3, 32, 32)).sum().backward()
    assert seen == [(1, 96, 16, 16), (2, 96, 16, 16)]


def test_other_norms_and_mixed_precision_take_the_modules(monkeypatch):
    calls = []
    monkeypatch.setattr(fusion.NormAct, "forward", staticmethod(lambda ctx, *args: calls.append(1)))
    group = archc.load("efficientnet_b0", resolution=32, seed=0, overrides={"norm.type": "group"}).train()
    group(torch.randn(2, 3, 32, 32)).sum().backward()
    batch = archc.load("efficientnet_b0", resolution=32, seed=0).train()
    with torch.autocast("cpu", dtype=torch.bfloat16):
        batch(torch.randn(2, 3, 32, 32)).float().sum().backward()
    assert calls == []


def test_module_by_module_is_the_plain_modules(monkeypatch):
    """``set_fast_paths(False)`` runs no fast path, in training or inference."""
    calls = []
    monkeypatch.setattr(fusion, "_inference", lambda *args: calls.append("fold"))
    monkeypatch.setattr(fusion.NormAct, "forward", staticmethod(lambda ctx, *args: calls.append("norm_act")))
    model = archc.load(TINY3D, seed=0).set_fast_paths(False)
    model.train()(torch.randn(2, 1, 16, 16, 16)).sum().backward()
    with torch.no_grad():
        model.eval()(torch.randn(1, 1, 16, 16, 16))
    assert calls == [] and not any(m.fast_paths for m in model.modules() if hasattr(m, "fast_paths"))


def _count_fast_paths(monkeypatch) -> collections.Counter:
    """Count the calls into each fast path, which still run: a fold for inference, NormAct's forward and backward."""
    calls = collections.Counter()
    fold, forward, backward = fusion._inference, fusion.NormAct.forward, fusion.NormAct.backward

    def counted(key, run):
        def wrapper(*args):
            calls[key] += 1
            return run(*args)
        return wrapper

    monkeypatch.setattr(fusion, "_inference", counted("fold", fold))
    monkeypatch.setattr(fusion.NormAct, "forward", staticmethod(counted("norm_act", forward)))
    monkeypatch.setattr(fusion.NormAct, "backward", staticmethod(counted("norm_act_backward", backward)))
    return calls


def _timm_units(name: str) -> tuple[int, int]:
    """(conv units, those with a batch norm and an activation whose backward reads its input) of timm's module: its
    convs outside squeeze-excite, and its BatchNormAct2d with SiLU or hard swish (the activations of these two)."""
    from timm.layers import BatchNormAct2d

    with torch.device("meta"):
        peer = timm.create_model(name)
    convs = sum(isinstance(m, nn.Conv2d) and ".se." not in path for path, m in peer.named_modules())
    norm_acts = sum(isinstance(m, BatchNormAct2d) and type(m.act) in (nn.SiLU, nn.Hardswish) for m in peer.modules())
    return convs, norm_acts


# B0 (49 conv units, 33 of them with SiLU after their norm) in 2D and 3D, and MobileNetV3 (47 units: a head conv
# without a norm; 20 norms before hard swish, the rest before ReLU, whose backward reads its output).
COUNTED = [("efficientnet_b0", 2), ("efficientnet_b0", 3), ("mobilenetv3_large_100", 2)]


@pytest.mark.parametrize("name, dims", COUNTED)
def test_inference_folds_every_conv_unit(name, dims, monkeypatch):
    """Each conv unit's inference goes through the fold, mixed convs aside (none here): one call per unit of
    timm's module of that name, and none into the training path."""
    convs, _ = _timm_units(name)
    model = archc.load(name, dims=dims, resolution=32 if dims == 2 else 16, seed=0).eval()
    calls = _count_fast_paths(monkeypatch)
    with torch.no_grad():
        model(torch.randn(1, 3, *model.plan.resolution))
    assert calls == {"fold": convs}


@pytest.mark.parametrize("name, dims", COUNTED)
def test_a_training_step_takes_norm_act_for_every_unit_it_applies_to(name, dims, monkeypatch):
    """A training step runs NormAct forward and backward once per batch norm followed by SiLU or hard swish, as many
    as timm's module has, and never folds."""
    _, norm_acts = _timm_units(name)
    model = archc.load(name, dims=dims, resolution=32 if dims == 2 else 16, seed=0).train()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    calls = _count_fast_paths(monkeypatch)
    loss = model(torch.randn(2, 3, *model.plan.resolution)).logsumexp(1).mean()
    loss.backward()
    optimiser.step()
    assert calls == {"norm_act": norm_acts, "norm_act_backward": norm_acts}


@pytest.mark.parametrize("observed", ["module_by_module", "global_hook", "hook_on_each_norm"])
def test_no_fast_path_is_taken_where_the_modules_must_run(observed, monkeypatch):
    """``set_fast_paths(False)``, a global forward hook or a hook on every norm: the same training step and inference
    as above take no fast path at all."""
    model = archc.load("efficientnet_b0", resolution=32, seed=0)
    handles = []
    if observed == "module_by_module":
        model.set_fast_paths(False)
    elif observed == "global_hook":
        handles.append(nn.modules.module.register_module_forward_hook(lambda module, inputs, output: None))
    else:
        handles += [m.register_forward_hook(lambda module, inputs, output: None) for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    calls = _count_fast_paths(monkeypatch)
    try:
        model.train()(torch.randn(2, 3, 32, 32)).logsumexp(1).mean().backward()
        with torch.no_grad():
            model.eval()(torch.randn(1, 3, 32, 32))
    finally:
        for handle in handles:
            handle.remove()
    assert calls == {}


@pytest.mark.parametrize("seed", range(5))
def test_a_norm_folded_for_deployment_is_no_norm(seed):
    """A model whose norms ``fuse_norms`` replaced by identities runs its units as conv and activation."""
    model = archc.load(TINY3D, dims=2, resolution=32, seed=0)
    calibrate_norms(model, (1, 32, 32))
    x = torch.randn(2, 1, 32, 32, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        expected = copy.deepcopy(model).eval().set_fast_paths(False)(x)
        fused = archc.emit.network.fuse_norms(model)
        assert not any(isinstance(m, nn.BatchNorm2d) for m in fused.modules())
        _close(fused(x), expected, rel=1e-5)


def test_channels_last_inference_only_where_it_was_measured_to_win():
    volume = torch.randn(1, 2, 4, 4, 4)
    assert fusion.inference_layout(volume) == torch.channels_last_3d
    assert fusion.inference_layout(torch.randn(1, 2, 4, 4)) == torch.channels_last
    assert fusion.inference_layout(torch.randn(1, 2, 4)) == torch.contiguous_format
    assert fusion.inference_layout(volume.double()) == torch.contiguous_format
    with torch.autocast("cpu", dtype=torch.bfloat16):
        assert fusion.inference_layout(volume) == torch.contiguous_format


# Second-order gradients (gradient penalties, MAML, Hessian-vector products): NormAct's backward builds its own graph
# under create_graph. In float64, so that only the order of summation separates the paths.

def _second_order(run, x, params):
    """(gradient penalty's gradients, Hessian-vector product) of ``run`` at ``x`` with respect to ``params``."""
    out = run(x)
    (grad_x,) = torch.autograd.grad(out.square().sum(), x, create_graph=True)
    penalty = torch.autograd.grad(grad_x.square().sum(), params, retain_graph=True)  # d/dparams |dL/dx|^2
    grads = torch.autograd.grad(out.square().sum(), params, create_graph=True)
    vector = [torch.randn(p.shape, dtype=p.dtype, generator=torch.Generator().manual_seed(i)) for i, p in enumerate(params)]
    hvp = torch.autograd.grad(sum((g * v).sum() for g, v in zip(grads, vector)), params)
    return penalty + hvp


def _equal64(actual, expected) -> None:
    """Each within 1e-10 of its own largest value, or of the largest anywhere (some are zero but for rounding, e.g. a
    conv's bias under a batch norm)."""
    scale = max(b.abs().max() for b in expected)
    for a, b in zip(actual, expected, strict=True):
        assert (a - b).abs().max() <= 1e-10 * max(b.abs().max(), 1e-2 * scale), (a - b).abs().max()


@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("act", ["silu", "hardswish", "mish", "gelu"])
def test_second_order_gradients_equal_the_modules(dims, act, monkeypatch):
    unit = [m.double() for m in _unit(dims, 8, 8, 3, 1, "symmetric", act=act)]
    twin = copy.deepcopy(unit)
    x = torch.randn(2, 8, *(7, 6, 5)[:dims], dtype=torch.float64, requires_grad=True)
    calls = []
    monkeypatch.setattr(fusion.NormAct, "differentiable_backward", staticmethod(lambda ctx, grad, run=fusion.NormAct.differentiable_backward: calls.append(1) or run(ctx, grad)))
    fast = _second_order(lambda x: fusion.conv_norm_act(x, *unit), x, [unit[0].weight, unit[1].weight, unit[1].bias])
    assert calls  # the fast path ran, and its double backward
    _equal64(fast, _second_order(lambda x: _reference(x, *twin), x, [twin[0].weight, twin[1].weight, twin[1].bias]))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_a_network_s_second_order_gradients_equal_module_by_module(dims):
    """A small network (in 3D with the depthwise rewrite's backward too) in training mode, double backward."""
    model = archc.load(TINY3D, dims=dims, seed=0).double().train()
    plain = copy.deepcopy(model).set_fast_paths(False)
    x = torch.randn(2, 1, *(16,) * dims, dtype=torch.float64, generator=torch.Generator().manual_seed(0)).requires_grad_()
    _equal64(_second_order(model, x, list(model.parameters())), _second_order(plain, x, list(plain.parameters())))


@pytest.mark.slow
@pytest.mark.parametrize("act", ["silu", "hardswish", "mish", "gelu"])
def test_gradcheck_and_gradgradcheck_a_training_unit(act):
    """torch's own numerical check of the fast path's first and second derivatives, in input, conv weight and norm affine."""
    conv, norm, activation = (m.double() for m in _unit(2, 2, 3, 3, 1, "symmetric", act=act))
    generator = torch.Generator().manual_seed(0)
    inputs = [torch.randn(2, 2, 4, 4, dtype=torch.float64, generator=generator), conv.weight.detach().clone(), norm.weight.detach().clone(), norm.bias.detach().clone()]
    inputs = [t.requires_grad_() for t in inputs]

    def unit(x, weight, gamma, beta):
        conv.weight, norm.weight, norm.bias = weight, gamma, beta  # plain tensors in the modules' places
        return fusion.conv_norm_act(x, conv, norm, activation)

    del conv.weight, norm.weight, norm.bias
    assert torch.autograd.gradcheck(unit, inputs, fast_mode=True)  # fast_mode: random projections of the Jacobian
    assert torch.autograd.gradgradcheck(unit, inputs, fast_mode=True)


def _untracked(model):
    """``model`` with batch norms that keep no running statistics: torch.func.vmap cannot update shared buffers from a
    batched forward, on any path."""
    for m in model.modules():
        if isinstance(m, nn.modules.batchnorm._BatchNorm):
            m.track_running_stats, m.running_mean, m.running_var, m.num_batches_tracked = False, None, None, None
    return model


class _Unit(nn.Module):
    """A conv unit run by ``run`` (the fast paths or the modules), for torch.func.functional_call."""

    def __init__(self, run, conv, norm, act):
        super().__init__()
        self.run, self.conv, self.norm, self.act = run, conv, norm, act

    def forward(self, x):
        return self.run(x, self.conv, self.norm, self.act)


@pytest.mark.parametrize("act", ["silu", "gelu"])
def test_torch_func_grad_and_vmap_of_a_training_unit_equal_the_modules(act):
    """torch.func.grad and vmap(grad) (per-sample gradients) through a training unit: the modules' ops, whose rules
    torch.func has (a Function would need its own)."""
    from torch.func import functional_call, grad, vmap

    modules = [m.double() for m in _unit(2, 4, 4, 3, 1, "symmetric", act=act)]
    _untracked(modules[1])
    x = torch.randn(3, 2, 4, 5, 5, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    results = []
    for run in (fusion.conv_norm_act, _reference):
        unit = _Unit(run, *modules)
        params = {k: v.detach() for k, v in unit.named_parameters()}

        def loss(p, x, unit=unit):
            return functional_call(unit, p, (x,)).square().sum()

        results.append([*grad(loss)(params, x[0]).values(), *vmap(grad(loss), in_dims=(None, 0))(params, x).values()])
    _equal64(*results)


@pytest.mark.slow
@pytest.mark.parametrize("mode", ["train", "eval"])
def test_torch_func_transforms_give_module_by_module_results(mode):
    """torch.func.grad, vmap(grad) (per-sample gradients) and jvp, in training (NormAct) and in evaluation with autograd
    on (the 3D depthwise rewrite): the plain ops, whose rules torch.func has."""
    from torch.func import functional_call, grad, jvp, vmap

    dims = 2 if mode == "train" else 3  # NormAct in any dimensionality; the depthwise rewrite in 3D only
    model = archc.load(TINY3D, dims=dims, seed=0).double()
    model = _untracked(model).train() if mode == "train" else model.eval()
    params = {k: v.detach() for k, v in model.named_parameters()}
    x = torch.randn(3, 1, *(16,) * dims, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def loss(p, x):
        return functional_call(model, p, (x,)).square().sum()

    def transforms():
        per_sample = vmap(grad(loss), in_dims=(None, 0))(params, x.unsqueeze(1))
        tangent = jvp(lambda x: functional_call(model, params, (x,)), (x,), (torch.ones_like(x),))
        return [*grad(loss)(params, x).values(), *per_sample.values(), *tangent]

    fast = transforms()
    model.set_fast_paths(False)
    _equal64(fast, transforms())


def _hook_calls(model, x, register):
    """Every backward hook's call, as (kind, module, gradient norms), in the order they fired, and the parameters' gradients."""
    calls = []

    def hook(kind, name):
        def record(module, *grads):
            calls.append((kind, name, [g.norm().item() for gs in grads for g in gs if g is not None]))
        return record

    handles = register(hook)
    try:
        model(x).square().sum().backward()
    finally:
        for handle in handles:
            handle.remove()
    return calls, [p.grad for p in model.parameters()]


def _same_calls(fast, plain):
    (calls, grads), (calls_plain, grads_plain) = fast, plain
    assert [c[:2] for c in calls] == [c[:2] for c in calls_plain] and calls
    for (_, _, norms), (_, _, norms_plain) in zip(calls, calls_plain):
        torch.testing.assert_close(norms, norms_plain, rtol=1e-10, atol=1e-12)
    _equal64(grads, grads_plain)


@pytest.mark.parametrize("dims", [2, 3])
@pytest.mark.parametrize("kind", ["full", "pre", "legacy"])
def test_backward_hooks_on_a_unit_fire_as_module_by_module(dims, kind):
    """Full, full-pre and legacy backward hooks on a unit's conv, norm and activation (GELU: a full hook cannot wrap an
    in-place activation on any path), in training, with the modules' gradients; the 3D depthwise conv too."""
    register_hook = {"full": "register_full_backward_hook", "pre": "register_full_backward_pre_hook", "legacy": "register_backward_hook"}[kind]
    model = archc.load(TINY3D, dims=dims, seed=0, overrides={"activation": "gelu"}).double().train()
    x = torch.randn(2, 1, *(16,) * dims, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def register(hook):
        block = model.stages[0][0]
        modules = [("stem.bn", model.stem.bn), ("stem.act", model.stem.act)] + [(name, getattr(block, name)) for name in ("conv_dw", "bn2", "act2")]
        return [getattr(m, register_hook)(hook(kind, name)) for name, m in modules]

    fast = _hook_calls(model, x, register)
    model.set_fast_paths(False).zero_grad()
    _same_calls(fast, _hook_calls(model, x, register))


def test_legacy_backward_hooks_on_an_in_place_activation_fire():
    model = archc.load(TINY3D, seed=0).double().train()  # SiLU in place
    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))

    def register(hook):
        return [m.register_backward_hook(hook("legacy", name)) for name, m in model.named_modules() if isinstance(m, (nn.SiLU, nn.BatchNorm3d))]

    fast = _hook_calls(model, x, register)
    model.set_fast_paths(False).zero_grad()
    _same_calls(fast, _hook_calls(model, x, register))


def test_global_backward_hooks_fire_as_module_by_module():
    model = archc.load(TINY3D, seed=0, overrides={"activation": "gelu", "se.activation": "gelu"}).double().train()
    x = torch.randn(2, 1, 16, 16, 16, dtype=torch.float64, generator=torch.Generator().manual_seed(0))
    names = {m: name for name, m in model.named_modules()}

    def register(hook):
        def by_module(kind):
            def record(module, *grads):
                if isinstance(module, (nn.modules.conv._ConvNd, nn.BatchNorm3d, nn.GELU)):
                    hook(kind, names[module])(module, *grads)
            return record
        module = nn.modules.module
        return [module.register_module_full_backward_hook(by_module("full")), module.register_module_full_backward_pre_hook(by_module("pre"))]

    fast = _hook_calls(model, x, register)
    model.set_fast_paths(False).zero_grad()
    _same_calls(fast, _hook_calls(model, x, register))


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_an_empty_batch_gives_what_module_by_module_gives(dims):
    """N = 0 in training (NormAct, the depthwise rewrite), in evaluation with autograd on and for inference."""
    model = archc.load(TINY3D, dims=dims, seed=0)
    plain = copy.deepcopy(model).set_fast_paths(False)
    x = torch.randn(0, 1, *(16,) * dims, requires_grad=True)
    for net in (model, plain):
        net.train()(x).sum().backward()
        with torch.no_grad():
            assert net.eval()(x).shape == (0, 2)
        assert net(x).shape == (0, 2)
    for (name, a), b in zip(model.state_dict().items(), plain.state_dict().values()):
        assert torch.equal(a, b), name  # running statistics and batch counts
    for (name, a), b in zip(model.named_parameters(), plain.parameters()):
        assert torch.equal(a.grad, b.grad), name


@pytest.mark.parametrize("name, kwargs", [(str(TINY3D), dict(dims=1, overrides=["padding=same"])), (str(TINY3D), dict(dims=2, overrides=["padding=same"])),
                                          (str(TINY3D), dict(resolution=16, overrides=["padding=same"])), ("mixnet_s", dict(dims=1, resolution=32)),
                                          (str(TINY3D), dict(overrides=["decoder.type=unet"], resolution=(12, 16, 16)))])
def test_a_pickled_model_computes_what_it_did(name, kwargs, tmp_path):
    """pickle (``mp.spawn`` arguments), ``torch.save`` of the whole module and deepcopy: the same classes, state and
    outputs, in inference and in a training step, on the fast paths. TF "same" padding and depthwise convs are
    classes of their own; mixed kernels and the U-Net's decoder are modules of their own."""
    model = archc.load(name, seed=0, **kwargs)
    x = torch.randn(2, model.plan.in_channels, *model.plan.resolution, generator=torch.Generator().manual_seed(0))
    torch.save(model, tmp_path / "model.pt")
    copies = [pickle.loads(pickle.dumps(model)), torch.load(tmp_path / "model.pt", weights_only=False), copy.deepcopy(model)]
    expected = _inference_and_a_step(model, x)
    for copied in copies:
        assert [type(m) for m in copied.modules()] == [type(m) for m in model.modules()] and copied.plan == model.plan
        for a, b in zip(_inference_and_a_step(copied, x), expected, strict=True):
            assert torch.equal(a, b)


def _inference_and_a_step(model, x) -> list:
    """The output in inference, then in training (drop path seeded) with every gradient and the state after it."""
    with torch.no_grad():
        outputs = [model.eval()(x)]
    with torch.random.fork_rng():
        torch.manual_seed(0)
        out = model.train()(x)
    out.square().mean().backward()
    return outputs + [out, *(p.grad for p in model.parameters()), *model.state_dict().values()]
