"""Depthwise convolutions (groups == in == out channels) with a backward that oneDNN's is not.

oneDNN's depthwise backward on CPU is one to two orders of magnitude from memory speed in 3D (a 32-channel
3x3x3 depthwise conv at 2x32^3: backward ~80 ms, forward ~10 ms, where one pass over its tensors takes ~2 ms),
while its depthwise *forward* is tolerable. So the backward is rewritten as forward convolutions:

- input gradient = the depthwise conv of the output gradient with the spatially flipped kernel, padding
  ``k - 1 - p`` (the transposed convolution of a stride-1 conv is that correlation);
- weight gradient = a depthwise conv of the input, seen as one sample with ``N * C`` channels, by the output
  gradient as its kernel (``groups = N * C``), summed over the batch afterwards.

Both are exact reformulations (the same products, summed in another order: equal to float32 rounding).
Where each wins was measured shape by shape (docs/performance.md, "Depthwise convolutions"); the rule that
came out of it is :func:`fast_backward`. Everything else, and every export path, runs the plain op.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

CONV_FN = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def fast_backward(dims: int, stride: tuple[int, ...], dilation: tuple[int, ...], padding: tuple[int, ...],
                  kernel: tuple[int, ...]) -> bool:
    """Whether the rewritten backward wins for this conv. Only stride 1 and dilation 1: for stride 2 the input
    gradient needs a zero-stuffed gradient (8x its size in 3D) and the weight gradient a dilated kernel, and
    both measured slower than oneDNN's. Only 3D: in 1D and 2D oneDNN has real depthwise kernels and the
    rewrite measured level or slower. ``padding`` must not exceed ``k - 1`` (the flipped conv pads ``k - 1 - p``)."""
    return (dims == 3 and all(s == 1 for s in stride) and all(d == 1 for d in dilation)
            and all(0 <= p <= k - 1 for p, k in zip(padding, kernel)))


class DepthwiseConv(torch.autograd.Function):
    """``convNd(x, weight, bias, stride=1, padding, groups=C)`` with the backward described in the module."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, weight: torch.Tensor, bias: torch.Tensor | None, padding: tuple[int, ...]) -> torch.Tensor:
        ctx.save_for_backward(x, weight)
        ctx.padding = padding
        ctx.has_bias = bias is not None
        return CONV_FN[x.ndim - 2](x, weight, bias, 1, padding, 1, x.shape[1])

    @staticmethod
    def backward(ctx, grad: torch.Tensor):
        x, weight = ctx.saved_tensors
        conv, channels = CONV_FN[x.ndim - 2], x.shape[1]
        spatial = tuple(range(2, x.ndim))
        grad_x = grad_w = grad_b = None
        if ctx.needs_input_grad[0]:
            flipped_padding = tuple(k - 1 - p for k, p in zip(weight.shape[2:], ctx.padding))
            grad_x = conv(grad, weight.flip(spatial), None, 1, flipped_padding, 1, channels)
        if ctx.needs_input_grad[1]:
            batch = x.shape[0]
            # (1, N*C, *S) correlated with (N*C, 1, *S_out): one (N*C, *k) weight gradient per sample and channel
            per_sample = conv(x.reshape(1, batch * channels, *x.shape[2:]), grad.reshape(batch * channels, 1, *grad.shape[2:]),
                              None, 1, ctx.padding, 1, batch * channels)
            grad_w = per_sample.reshape(batch, *weight.shape).sum(0)
        if ctx.has_bias and ctx.needs_input_grad[2]:
            grad_b = grad.sum((0, *spatial))
        return grad_x, grad_w, grad_b, None


def plain_only() -> bool:
    """While a model is traced or exported, the plain op: TorchScript, ONNX and torch.export know it and not
    this Function. (torch.compile traces the Function and its backward like any other code.)"""
    return torch.jit.is_tracing() or torch.compiler.is_exporting() or torch.onnx.is_in_onnx_export()


def depthwise(cls: type) -> type:
    """``cls`` (an ``nn.ConvNd``) whose training forward takes the rewritten backward where it wins. The module,
    its ``weight`` and ``bias`` (the state_dict) and its inference forward are ``cls``'s own."""

    class DepthwiseConvNd(cls):
        def forward(self, x: torch.Tensor) -> torch.Tensor:
            if torch.jit.is_scripting() or not self._fast(x):
                return super().forward(x)
            return self._fast_forward(x)

        @torch.jit.unused
        def _fast(self, x: torch.Tensor) -> bool:
            return (torch.is_grad_enabled() and (x.requires_grad or self.weight.requires_grad) and not plain_only()
                    and self.padding_mode == "zeros" and isinstance(self.padding, tuple)
                    and fast_backward(x.ndim - 2, self.stride, self.dilation, self.padding, self.kernel_size))

        @torch.jit.unused
        def _fast_forward(self, x: torch.Tensor) -> torch.Tensor:
            return DepthwiseConv.apply(x, self.weight, self.bias, self.padding)

    DepthwiseConvNd.__name__ = DepthwiseConvNd.__qualname__ = f"Depthwise{cls.__name__}"
    return DepthwiseConvNd
