"""How one conv unit (conv -> norm -> activation) runs. Where its norm is a batch norm, one of two paths computes
what the three modules compute with fewer passes over memory; everywhere else the modules run one by one.

- **Inference** (eval mode, autograd off): the norm is folded into the conv on each call, ``w * g / sqrt(v + eps)``
  and ``beta - m * g / sqrt(v + eps)``, so no pass over the conv's output is spent on the norm; the folded weight
  takes the input's memory layout (``Network`` runs inference channels-last, where oneDNN's 3D convolutions,
  depthwise above all, are several times faster than in the ordinary layout, and batch norm is slower).
- **Training**: norm and activation are one autograd Function, :class:`NormAct`, that keeps only the norm's input
  for backward and recomputes the norm's output there. Autograd would keep the norm's input, its output (copied,
  as the activation runs in place) and the activation's output, which the next conv keeps anyway: one tensor and
  one copy fewer per unit, for one elementwise pass in backward. Only for activations whose backward needs their
  input (SiLU, hard swish, Mish, GELU); ReLU's backward reads its output, which autograd keeps without a copy.
  Second-order gradients (``create_graph``: gradient penalties, MAML, Hessian-vector products) are the modules'
  own: forward cannot know whether the later backward builds a graph, so backward decides. Building one (autograd
  on in backward), it recomputes norm and activation with torch's ops and differentiates them with autograd
  (:meth:`NormAct.differentiable_backward`); the fast backward is not differentiable (aten's activation backwards
  have no derivative, and the batch's mean and deviation it reads count as constants).

Both compute the same as the modules to float32 rounding (tests/test_fusion.py). Neither is taken where the
difference could be seen or where it does not apply: hooks of any kind on the conv, norm or activation or global
ones (forward or backward: a fused module's would not run), a norm other than torch's BatchNorm1d/2d/3d
(SyncBatchNorm, group, instance and layer norms), for inference a mixed conv (each part would need its own slice of
the norm), another dtype in the conv's output than in the norm's weights (autocast), an empty batch in training, and
while a model is traced or exported or runs under torch.func's transforms (``grad``, ``vmap``, ``jvp``, ...) or
forward-mode AD, which know torch's ops and not a Function (:func:`.depthwise.plain_only`).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from .depthwise import hooked, plain_only

BATCH_NORMS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.BatchNorm3d)

# The backward of each activation whose backward reads its input, as aten computes it.
INPUT_BACKWARD = {
    nn.SiLU: lambda act, grad, z: torch.ops.aten.silu_backward(grad, z),
    nn.Hardswish: lambda act, grad, z: torch.ops.aten.hardswish_backward(grad, z),
    nn.Mish: lambda act, grad, z: torch.ops.aten.mish_backward(grad, z),
    nn.GELU: lambda act, grad, z: torch.ops.aten.gelu_backward(grad, z, approximate=act.approximate),
}

CHANNELS_LAST = {4: torch.channels_last, 5: torch.channels_last_3d}


def inference_layout(x: torch.Tensor) -> torch.memory_format:
    """The layout inference runs in: channels-last for float32 images and volumes on the CPU, where it was measured
    to win (benchmarks/peers.py); the ordinary one for 1D signals, and for other devices, other dtypes and
    autocast, where it was not measured."""
    if x.device.type != "cpu" or x.dtype != torch.float32 or _cpu_autocast():
        return torch.contiguous_format
    return CHANNELS_LAST.get(x.ndim, torch.contiguous_format)


def _cpu_autocast() -> bool:
    try:
        return torch.is_autocast_enabled("cpu")
    except TypeError:  # torch before 2.4 has no device argument
        return torch.is_autocast_cpu_enabled()


def conv_norm_act(x: torch.Tensor, conv: nn.Module, norm: nn.Module | None, act: nn.Module | None) -> torch.Tensor:
    """``act(norm(conv(x)))``, either module possibly absent, by the path the module's docstring describes."""
    if isinstance(norm, nn.Identity):  # a norm already folded into its conv (``fuse_norms``)
        norm = None
    if _unobserved(conv, norm, act) and not plain_only():
        mixed = isinstance(conv, nn.ModuleList)  # a mixed conv's parts: no single weight to fold into
        if not torch.is_grad_enabled() and not (norm is not None and norm.training) and not mixed:
            return _apply(act, _inference(x, conv, norm))
        if norm is not None and norm.training and type(act) in INPUT_BACKWARD:
            y = conv(x)
            if y.requires_grad and y.dtype == norm.weight.dtype and y.numel():  # native_batch_norm refuses an empty batch
                return NormAct.apply(y, norm.weight, norm.bias, *_statistics(norm), norm.eps, act)
            return act(norm(y))
    return one_by_one(x, conv, norm, act)


def one_by_one(x: torch.Tensor, conv: nn.Module, norm: nn.Module | None, act: nn.Module | None) -> torch.Tensor:
    """The unit's modules one after the other: the ops the reference implementations run."""
    return _apply(act, _apply(norm, conv(x)))


def _apply(module: nn.Module | None, x: torch.Tensor) -> torch.Tensor:
    return x if module is None else module(x)


def _unobserved(conv: nn.Module, norm: nn.Module | None, act: nn.Module | None) -> bool:
    """No hooks of any kind on the unit's modules, none global, and the norm (if any) is a plain, affine batch norm."""
    if norm is not None and not (type(norm) in BATCH_NORMS and norm.affine):
        return False
    return not hooked(conv, norm, act)


def _inference(x: torch.Tensor, conv: nn.Module, norm: nn.Module | None) -> torch.Tensor:
    """The conv with the norm folded in, its weight in ``x``'s layout."""
    weight, bias = conv.weight, conv.bias
    if norm is not None:
        if norm.running_mean is None:  # a norm without running statistics uses the batch's even in eval mode
            return norm(conv(x))
        scale = norm.weight * torch.rsqrt(norm.running_var + norm.eps)
        shift = norm.bias - norm.running_mean * scale
        weight = weight * scale.view(-1, *(1,) * (weight.ndim - 1))
        bias = shift if bias is None else bias * scale + shift
    layout = inference_layout(x)
    if not x.is_contiguous(memory_format=layout):  # an input given in the ordinary layout (a unit run alone)
        layout = torch.contiguous_format
    return forward_with(conv, x, weight.to(memory_format=layout), bias)  # `to`: real strides, even where sizes of 1 make layouts alike


def forward_with(conv: nn.Module, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None) -> torch.Tensor:
    """``conv(x)`` computed with ``weight`` and ``bias`` in place of the conv's own (its padding, stride, groups)."""
    pad = getattr(conv, "pad_input", None)  # the "same" padding convs of ``ops`` pad each input for its size
    return conv._conv_forward(x if pad is None else pad(x), weight, bias)


def _statistics(norm: nn.modules.batchnorm._BatchNorm) -> tuple:
    """(running mean, running variance, momentum) as ``_BatchNorm.forward`` uses them in training mode, counting
    the batch as it does (a momentum of None is the cumulative average)."""
    if not norm.track_running_stats:
        return None, None, 0.0
    norm.num_batches_tracked.add_(1)
    momentum = 1.0 / float(norm.num_batches_tracked) if norm.momentum is None else norm.momentum
    return norm.running_mean, norm.running_var, momentum


class NormAct(torch.autograd.Function):
    """``act(batch_norm(y))`` in training mode (batch statistics, running statistics updated), keeping ``y``,
    the batch's mean and inverse deviation for backward and nothing of the norm's or activation's output."""

    @staticmethod
    def forward(ctx, y, weight, bias, running_mean, running_var, momentum: float, eps: float, act: nn.Module):
        z, mean, invstd = torch.native_batch_norm(y, weight, bias, running_mean, running_var, True, momentum, eps)
        ctx.save_for_backward(y, weight, bias, mean, invstd)
        ctx.eps, ctx.act = eps, act
        return act(z)  # in place where the activation is (autograd is off inside forward)

    @staticmethod
    def backward(ctx, grad):
        if torch.is_grad_enabled():  # create_graph: a graph of this gradient is being built
            return NormAct.differentiable_backward(ctx, grad)
        y, weight, bias, mean, invstd = ctx.saved_tensors
        shape = (1, -1) + (1,) * (y.ndim - 2)
        scale = weight * invstd
        z = torch.addcmul((bias - mean * scale).view(shape), y, scale.view(shape))  # the norm's output, again
        grad_z = INPUT_BACKWARD[type(ctx.act)](ctx.act, grad, z)
        del z
        grad_y, grad_weight, grad_bias = torch.ops.aten.native_batch_norm_backward(
            grad_z, y, weight, None, None, mean, invstd, True, ctx.eps, [ctx.needs_input_grad[0], ctx.needs_input_grad[1], ctx.needs_input_grad[2]])
        return grad_y, grad_weight, grad_bias, None, None, None, None, None

    @staticmethod
    def differentiable_backward(ctx, grad):
        """The gradient as autograd computes it for the modules, with its own graph (second-order gradients):
        the norm and activation recomputed from the kept ``y`` (the batch's statistics again, the running ones
        untouched) and differentiated with ``create_graph``. The fast backward above is not differentiable: aten's
        activation backwards have no derivative, and the kept mean and deviation would count as constants."""
        y, weight, bias, _, _ = ctx.saved_tensors
        needed = [t for t, needs in zip((y, weight, bias), ctx.needs_input_grad[:3]) if needs]
        with torch.enable_grad():
            out = ctx.act.forward(F.batch_norm(y, None, None, weight, bias, True, 0.0, ctx.eps))  # forward: no hooks
        grads = iter(torch.autograd.grad(out, needed, grad, create_graph=True))
        return tuple(next(grads) if needs else None for needs in ctx.needs_input_grad[:3]) + (None,) * 5
