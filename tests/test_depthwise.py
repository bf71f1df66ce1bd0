"""Depthwise convolutions' rewritten backward (archc.emit.depthwise): the plain convolution's outputs and
gradients, wherever the emitter uses it and wherever a model goes (compile, exports, checkpointing)."""

import pytest
import torch
import torch.nn.functional as F
from conftest import TINY3D as TINY

import archc
from archc.emit import depthwise
from archc.emit.depthwise import DepthwiseConv
from archc.emit.ops import LayerFactory

CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def _close(actual: torch.Tensor, expected: torch.Tensor, rel: float = 1e-5) -> None:
    assert actual.shape == expected.shape
    assert (actual - expected).abs().max() <= rel * expected.abs().max(), (actual - expected).abs().max()


def _axes(value, dims):
    return (value,) * dims if isinstance(value, int) else value[-dims:]


# Every stride, kernel size and anisotropic kernel the EfficientNet family uses, and some it does not.
@pytest.mark.parametrize("dims", [1, 2, 3])
@pytest.mark.parametrize("kernel", [3, 5, (1, 3, 3), (3, 5, 5), (2, 3, 4)])
@pytest.mark.parametrize("stride", [1, 2, (1, 2, 2), 3])
@pytest.mark.parametrize("padding", ["symmetric", "none"])
def test_function_equals_the_plain_convolution(dims, kernel, stride, padding):
    kernel, stride = _axes(kernel, dims), _axes(stride, dims)
    pads = tuple(k // 2 for k in kernel) if padding == "symmetric" else (0,) * dims
    generator = torch.Generator().manual_seed(0)
    x = torch.randn(2, 6, *(9 + i for i in range(dims)), generator=generator, requires_grad=True)  # odd, unequal sizes
    w = torch.randn(6, 1, *kernel, generator=generator, requires_grad=True)
    b = torch.randn(6, generator=generator, requires_grad=True)
    expected = CONV[dims](x, w, b, stride, pads, 1, 6)
    grad = torch.randn(expected.shape, generator=generator)
    expected_grads = torch.autograd.grad(expected, (x, w, b), grad)
    out = DepthwiseConv.apply(x, w, b, stride, pads)
    _close(out, expected)
    for actual, wanted in zip(torch.autograd.grad(out, (x, w, b), grad), expected_grads):
        _close(actual, wanted)


@pytest.mark.parametrize("padding", ["symmetric", "same"])
@pytest.mark.parametrize("kernel", [3, 5, (1, 3, 3)])
def test_emitted_depthwise_conv_keeps_its_module_and_computes_the_plain_result(padding, kernel):
    layers = LayerFactory(3, None, padding)
    conv = layers.conv(8, 8, kernel, 1, groups=8)
    plain = layers.conv(8, 8, kernel, 1, groups=4)  # not depthwise: the plain class
    assert isinstance(conv, torch.nn.Conv3d) and type(conv) is not type(plain)
    assert list(conv.state_dict()) == ["weight"]
    x = torch.randn(2, 8, 7, 10, 9, requires_grad=True)
    out = conv(x)
    reference = torch.nn.Conv3d(8, 8, conv.kernel_size, padding=conv.padding, groups=8, bias=False)
    reference.weight = conv.weight
    expected = reference(F.pad(x, _same_pads(conv, x)) if padding == "same" else x)
    grad = torch.randn_like(expected)
    _close(out, expected)
    for actual, wanted in zip(torch.autograd.grad(out, (x, conv.weight), grad), torch.autograd.grad(expected, (x, conv.weight), grad)):
        _close(actual, wanted)


def _same_pads(conv, x):
    """TF "same" padding at stride 1: k - 1 per axis, the extra one after (F.pad lists the last axis first)."""
    pads = []
    for k in reversed(conv.kernel_size):
        pads += [(k - 1) // 2, k - 1 - (k - 1) // 2]
    return pads


@pytest.fixture
def calls(monkeypatch):
    """How many times the rewritten backward's Function ran."""
    count = [0]
    apply = DepthwiseConv.apply

    def counted(*args):
        count[0] += 1
        return apply(*args)

    monkeypatch.setattr(DepthwiseConv, "apply", counted)
    return count


def _step(model, x):
    out = model(x)
    out.square().mean().backward()
    return out.detach(), {k: p.grad for k, p in model.named_parameters()}


def _fast_and_plain(monkeypatch, run):
    fast = run()
    monkeypatch.setattr(depthwise, "fast_backward", lambda *args: False)
    plain = run()
    return fast, plain


def _assert_same_step(fast, plain):
    """Equal outputs, and gradients equal to float32 rounding as it propagates through a network's norms: each
    within 1e-4 of its own largest value, or 1e-6 of the largest gradient anywhere (some are zero but for
    rounding, e.g. an SE's bias under a batch norm)."""
    (out_fast, grads_fast), (out_plain, grads_plain) = fast, plain
    _close(out_fast, out_plain)
    scale = max(grad.abs().max() for grad in grads_plain.values())
    for key, grad in grads_plain.items():
        assert (grads_fast[key] - grad).abs().max() <= max(1e-4 * grad.abs().max(), 1e-6 * scale), key


@pytest.mark.parametrize("checkpointing", [False, True])
def test_a_model_trains_as_with_the_plain_convolution(monkeypatch, calls, checkpointing):
    x = torch.randn(2, 1, 17, 20, 16)  # odd and unequal sizes

    def run():
        return _step(archc.load(TINY, seed=0, checkpointing=checkpointing).train(), x)

    fast, plain = _fast_and_plain(monkeypatch, run)
    assert calls[0] > 0  # the rewritten backward ran (and only in the first run)
    _assert_same_step(fast, plain)


def test_inference_and_other_dimensions_run_the_plain_op(calls):
    model = archc.load(TINY, seed=0).eval()
    with torch.no_grad():
        model(torch.randn(1, 1, 16, 16, 16))
    archc.load(TINY, dims=2, seed=0).train()(torch.randn(2, 1, 16, 16)).sum().backward()
    channels_last = archc.load(TINY, seed=0).set_channels_last().train()
    channels_last(torch.randn(2, 1, 16, 16, 16)).sum().backward()
    assert calls[0] == 0


@pytest.mark.slow
def test_compiled_training_equals_eager(monkeypatch):
    x = torch.randn(2, 1, 16, 16, 16)

    def run():
        model = archc.load(TINY, seed=0).train()
        compiled = torch.compile(model, fullgraph=True, backend="aot_eager")  # fullgraph: any graph break raises
        out = compiled(x)
        out.square().mean().backward()
        return out.detach(), {k: p.grad for k, p in model.named_parameters()}

    fast, plain = _fast_and_plain(monkeypatch, run)
    _assert_same_step(fast, plain)


@pytest.mark.slow
def test_scripted_and_traced_training_models_use_the_plain_op(calls):
    model = archc.load(TINY, seed=0).train()
    x = torch.randn(2, 1, 16, 16, 16)
    scripted = torch.jit.script(model.stages[0][0].conv_dw)
    traced = torch.jit.trace(model.stages[0][0].conv_dw, torch.randn(2, 8, 8, 8, 8, requires_grad=True))
    assert "PythonOp" not in str(traced.graph)  # the plain op, which TorchScript and ONNX know
    h = torch.randn(2, 8, 8, 8, 8)
    torch.testing.assert_close(scripted(h), model.stages[0][0].conv_dw(h))
    program = torch.export.export(model, (x,))
    assert "aten.convolution" in str(program.graph) or "aten.conv3d" in str(program.graph)
    assert calls[0] == 1  # only the eager call above
