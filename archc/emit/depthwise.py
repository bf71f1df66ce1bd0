"""Depthwise convolutions (groups == in == out channels) with a backward that oneDNN's is not.

oneDNN's depthwise backward on CPU is one to two orders of magnitude from memory speed in 3D (a 32-channel
3x3x3 depthwise conv at 2x32^3: backward ~80 ms, forward ~10 ms, where one pass over its tensors takes ~2 ms),
while its depthwise *forward* is tolerable. So the backward is rewritten as forward convolutions:

- input gradient = the depthwise conv of the output gradient with the spatially flipped kernel, padding
  ``k - 1 - p`` (the transposed convolution of a stride-1 conv is that correlation);
- weight gradient = a depthwise conv of the input, seen as one sample with ``N * C`` channels, by the output
  gradient as its kernel (``groups = N * C``), summed over the batch afterwards.

With stride s both split by kernel phase (the taps ``q, q + s, ...`` on each axis): one stride-1 conv per phase,
on the output gradient (written to the input positions the phase reaches) or on the input's phase.

All are exact reformulations (the same products, summed in another order: equal to float32 rounding). They are
torch ops that autograd differentiates, so second-order gradients (``create_graph``) through the rewrite are exact.
Where they win was measured shape by shape (docs/performance.md, "Where the rewrite is used"); the rule that
came out of it is :func:`fast_backward`. Everything else, every export path, torch.func's transforms and a conv
with hooks (:func:`plain_only`, :func:`hooked`) run the plain op.
"""

import itertools

import torch
import torch.nn.functional as F
from torch import nn

CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def fast_backward(x: torch.Tensor, stride: tuple[int, ...], dilation: tuple[int, ...]) -> bool:
    """Whether the rewritten backward wins for a conv on ``x``, from the per-shape measurements in
    docs/performance.md: 3D, stride 1, no dilation, the input in the ordinary (N, C, D, H, W) layout. There it
    took 0.05x to 0.6x of oneDNN's time, for every depthwise conv of the EfficientNet family. Elsewhere it lost
    somewhere: at stride 2 the phases' convs cost 1.1x to 2.5x oneDNN's backward on three of four shapes; in 2D
    oneDNN has true depthwise kernels; in channels-last layout some shapes ran slower. An empty batch has nothing
    to win (and the weight gradient's conv would have ``N * C = 0`` groups)."""
    return (x.ndim == 5 and all(s == 1 for s in stride) and all(d == 1 for d in dilation)
            and x.is_contiguous() and x.numel() > 0)


class DepthwiseConv(torch.autograd.Function):
    """``convNd(x, weight, bias, stride, padding, groups=C)`` with the backward described in the module."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, stride: tuple[int, ...],
                padding: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.stride, ctx.padding, ctx.has_bias = stride, padding, bias is not None
        return CONV_FN[x.ndim - 2](x, weight, bias, stride, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            grad_x = input_grad(grad, weight, x.shape, ctx.stride, ctx.padding)
        if ctx.needs_input_grad[1]:
            grad_w = weight_grad(grad, x, weight.shape, ctx.stride, ctx.padding)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, *range(2, grad.ndim)))
        return grad_x, grad_w, grad_b, None, None


def _phases(kernel: tuple[int, ...], stride: tuple[int, ...]):
    """The kernel offsets ``q`` (one per axis, ``0 <= q < s``) whose taps ``q, q + s, ...`` form one stride-1
    sub-kernel: a stride-s conv is the sum of s^d stride-1 convs on the input's phases (polyphase)."""
    return itertools.product(*(range(min(s, k)) for k, s in zip(kernel, stride)))


def _conv_padded(x: torch.Tensor, kernel: torch.Tensor, pads: list[tuple[int, int]], groups: int) -> torch.Tensor:
    """Stride-1 correlation of ``x`` padded by ``(before, after)`` per axis (negative: cropped) with ``kernel``."""
    conv = CONV_FN[x.ndim - 2]
    if all(before == after >= 0 for before, after in pads):
        return conv(x, kernel, None, 1, tuple(before for before, _ in pads), 1, groups)
    flat = [side for before_after in reversed(pads) for side in before_after]  # F.pad lists the last axis first
    return conv(F.pad(x, flat), kernel, None, 1, 0, 1, groups)


def input_grad(grad: torch.Tensor, weight: torch.Tensor, shape: torch.Size, stride, padding) -> torch.Tensor:
    """dL/dx: for each phase, the stride-1 conv of the output gradient with the flipped sub-kernel, written to
    the input positions ``i = q - p (mod s)`` it reaches. With stride 1 that is one conv, written nowhere."""
    spatial = tuple(range(2, grad.ndim))
    kernel, sizes, out_sizes = weight.shape[2:], shape[2:], grad.shape[2:]
    # every input position lies in one phase; a phase without taps (a stride above the kernel) stays zero
    grad_x = None if all(s == 1 for s in stride) else grad.new_zeros(shape)
    for q in _phases(kernel, stride):
        first = [(qi - p) % s for qi, p, s in zip(q, padding, stride)]  # first input position of the phase, per axis
        taps = [len(range(qi, k, s)) for qi, k, s in zip(q, kernel, stride)]
        count = [len(range(i, n, s)) for i, n, s in zip(first, sizes, stride)]
        if 0 in count:
            continue
        # input position i = first + s*m takes output j0 + m - t with tap q + s*t, j0 = (first + p - q) / s
        pads = []
        for i, p, qi, s, t, c, n_out in zip(first, padding, q, stride, taps, count, out_sizes):
            before = t - 1 - (i + p - qi) // s
            pads.append((before, c + t - 1 - n_out - before))
        sub = weight[(..., *(slice(qi, None, s) for qi, s in zip(q, stride)))].flip(spatial)
        part = _conv_padded(grad, sub, pads, grad.shape[1])
        if grad_x is None:
            return part
        grad_x[(..., *(slice(i, None, s) for i, s in zip(first, stride)))] = part
    return grad_x


def weight_grad(grad: torch.Tensor, x: torch.Tensor, shape: torch.Size, stride, padding) -> torch.Tensor:
    """dL/dw: for each phase, the input's phase seen as one sample of N*C channels, correlated with the output
    gradient as N*C kernels (``groups = N*C``), summed over the batch into the taps ``q, q + s, ...``."""
    batch, channels = x.shape[:2]
    kernel, out_sizes = shape[2:], grad.shape[2:]
    kernels = grad.reshape(batch * channels, 1, *out_sizes)
    grad_w = grad.new_zeros(shape) if any(s > 1 for s in stride) else None
    for q in _phases(kernel, stride):
        first = [(qi - p) % s for qi, p, s in zip(q, padding, stride)]
        taps = [len(range(qi, k, s)) for qi, k, s in zip(q, kernel, stride)]
        phase = x[(..., *(slice(i, None, s) for i, s in zip(first, stride)))]
        # the phase's m-th value is padded-input position q + s*m; it needs n_out + taps - 1 of them
        pads = []
        for i, p, qi, s, t, n, n_out in zip(first, padding, q, stride, taps, phase.shape[2:], out_sizes):
            before = (i - (qi - p)) // s
            pads.append((before, n_out + t - 1 - n - before))
        folded = phase.reshape(1, batch * channels, *phase.shape[2:])
        part = _conv_padded(folded, kernels, pads, batch * channels).reshape(batch, channels, 1, *taps).sum(0)
        if grad_w is None:
            return part
        grad_w[(..., *(slice(qi, None, s) for qi, s in zip(q, stride)))] = part
    return grad_w


def plain_only() -> bool:
    """While a model is traced or exported, the plain op: TorchScript, torch.fx, ONNX and torch.export know it
    and not this Function; torch.fx's symbolic tracing could not even run it (its tensors are placeholders, with
    no values to branch on). TorchScript's compiler skips the fast paths by ``torch.jit.is_scripting()`` where
    they are written. (torch.compile traces the Function and its backward like any other code.) Likewise under
    torch.func's transforms (grad, vmap, jvp, jacrev, ...) and forward-mode AD: they have rules for torch's ops,
    and a Function would need its own (``setup_context``, a vmap rule, a ``jvp``)."""
    return (torch.jit.is_tracing() or torch.fx._symbolic_trace.is_fx_symbolic_tracing() or torch.compiler.is_exporting()
            or torch.onnx.is_in_onnx_export() or torch._C._are_functorch_transforms_active() or torch.autograd.forward_ad._current_level >= 0)


def hooked(*modules: nn.Module | None) -> bool:
    """Whether a hook would see a fast path's difference: one on any of ``modules`` (forward or backward, before or
    after, the legacy backward kind too) or a global one. A fast path runs none of a norm's or activation's hooks,
    and the legacy backward hook is given the inputs of a module's last autograd node, which a Function changes."""
    own = any(m._forward_hooks or m._forward_pre_hooks or m._backward_hooks or m._backward_pre_hooks for m in modules if m is not None)
    g = nn.modules.module
    return own or bool(g._global_forward_hooks or g._global_forward_pre_hooks or g._global_backward_hooks or g._global_backward_pre_hooks)


class Depthwise:
    """Mixed in before an ``nn.ConvNd`` (groups == in == out channels): its training forward takes the rewritten
    backward where it wins. The module, its ``weight`` and ``bias`` (the state_dict) and its inference forward are
    the ConvNd's own. The classes are defined here, at module level, so that models pickle."""

    fast_paths = True  # Network.set_fast_paths turns the rewrite off with the other fast paths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting() or not self._fast(x):
            return self._conv_forward(x, self.weight, self.bias)  # ConvNd.forward, as TorchScript reads it
        return self._fast_forward(x)

    @torch.jit.unused
    def _fast(self, x: torch.Tensor) -> bool:
        # plain_only first: under torch.fx ``x`` is a placeholder whose requires_grad cannot be read
        return (self.fast_paths and torch.is_grad_enabled() and not plain_only() and (x.requires_grad or self.weight.requires_grad) and not hooked(self)
                and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                and fast_backward(x, self.stride, self.dilation))

    @torch.jit.unused
    def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
        return DepthwiseConv.apply(x, self.weight, self.bias, self.stride, self.padding)


class DepthwiseConv1d(Depthwise, nn.Conv1d):
    pass


class DepthwiseConv2d(Depthwise, nn.Conv2d):
    pass


class DepthwiseConv3d(Depthwise, nn.Conv3d):
    pass
