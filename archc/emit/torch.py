"""build(plan) -> nn.Module: a direct translation of Plan nodes, one code path for 1D, 2D and 3D.

Submodule names are roles (``conv_pw``, ``conv_dw``, ``se``, ``conv_pwl`` as in timm) because they are
state_dict keys that checkpoints depend on: rename one and every saved model breaks.
"""

from __future__ import annotations

import contextlib
import math
from collections import OrderedDict

import torch
import torch.utils.checkpoint
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .. import ir
from .ops import GATE, NORMS, Layers


class ConvNormAct(nn.Sequential):
    """conv -> norm -> activation: the stem, the head's 1x1 conv, and ``conv`` blocks."""

    def __init__(self, layers: Layers, in_channels: int, out_channels: int, kernel, stride, activation: str):
        super().__init__(
            OrderedDict(
                conv=layers.conv(in_channels, out_channels, kernel, stride),
                bn=layers.norm(out_channels),
                act=layers.act(activation),
            )
        )


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): global average, 1x1 reduce, activation, 1x1 expand, gate."""

    def __init__(self, layers: Layers, channels: int, squeeze: int, activation: str, gate: str):
        super().__init__()
        self.spatial = tuple(range(2, 2 + layers.dims))  # every spatial axis, whatever dims is
        self.conv_reduce = layers.conv(channels, squeeze, bias=True)
        self.act = layers.act(activation)
        self.conv_expand = layers.conv(squeeze, channels, bias=True)
        self.gate = GATE[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = x.mean(self.spatial, keepdim=True)  # (N, C, 1, ...)
        s = self.act(self.conv_reduce(s))  # (N, S, 1, ...)
        s = self.gate(self.conv_expand(s))  # (N, C, 1, ...)
        return x * s


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop the residual branch per sample while training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty((x.shape[0],) + (1,) * (x.ndim - 1)).bernoulli_(keep)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class _Residual(nn.Module):
    """What MBConv and FusedMBConv share: the SE and its placement, and the skip with stochastic depth."""

    def _tail(self, block: ir.Block, layers: Layers, se_channels_in: int) -> None:
        self.se_after_project = block.se_placement == "after_project"
        if block.se_channels:
            width = block.out_channels if self.se_after_project else se_channels_in
            self.se = SqueezeExcite(layers, width, block.se_channels, block.se_activation, block.se_gate)
        else:
            self.se = nn.Identity()
        self.has_residual = block.residual
        self.drop_path = DropPath(block.drop_path) if block.residual and block.drop_path > 0 else nn.Identity()


class MBConv(_Residual):
    """Inverted residual (Sandler et al. 2018) with SE, as in EfficientNet."""

    def __init__(self, block: ir.Block, layers: Layers):
        super().__init__()
        mid = block.mid_channels
        if block.expand:
            self.conv_pw, self.bn1, self.act1 = layers.conv(block.in_channels, mid), layers.norm(mid), layers.act(block.activation)
        else:  # expand ratio 1: no expand conv, no keys in the state_dict
            self.conv_pw = self.bn1 = self.act1 = nn.Identity()
        self.conv_dw = layers.conv(mid, mid, block.kernel, block.stride, groups=mid)
        self.bn2, self.act2 = layers.norm(mid), layers.act(block.activation)
        self._tail(block, layers, mid)
        self.conv_pwl, self.bn3 = layers.conv(mid, block.out_channels), layers.norm(block.out_channels)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_pw(x)))  # expand:    (N, mid, *S)
        x = self.act2(self.bn2(self.conv_dw(x)))  # depthwise: (N, mid, *S/stride)
        if not self.se_after_project:
            x = self.se(x)
        x = self.bn3(self.conv_pwl(x))  # project:   (N, out, *S/stride), linear bottleneck: no activation
        if self.se_after_project:
            x = self.se(x)
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        return x


class FusedMBConv(_Residual):
    """EfficientNetV2's Fused-MBConv (Tan & Le 2021): one kxk conv replaces expand + depthwise.
    Without expansion it is a single kxk conv-norm-act (torchvision ``FusedMBConv``)."""

    def __init__(self, block: ir.Block, layers: Layers):
        super().__init__()
        width = block.mid_channels if block.expand else block.out_channels
        self.conv_exp = layers.conv(block.in_channels, width, block.kernel, block.stride)
        self.bn1, self.act1 = layers.norm(width), layers.act(block.activation)
        self._tail(block, layers, width)
        if block.expand:
            self.conv_pwl, self.bn2 = layers.conv(width, block.out_channels), layers.norm(block.out_channels)
        else:
            self.conv_pwl = self.bn2 = nn.Identity()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        x = self.act1(self.bn1(self.conv_exp(x)))  # fused expand: (N, mid, *S/stride)
        if not self.se_after_project:
            x = self.se(x)
        x = self.bn2(self.conv_pwl(x))  # project: (N, out, *S/stride)
        if self.se_after_project:
            x = self.se(x)
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        return x


def make_block(block: ir.Block, layers: Layers) -> nn.Module:
    if block.type == "mbconv":
        return MBConv(block, layers)
    if block.type == "fused_mbconv":
        return FusedMBConv(block, layers)
    return ConvNormAct(layers, block.in_channels, block.out_channels, block.kernel, block.stride, block.activation)


class Network(nn.Module):
    """stem -> stages -> head -> global average pool -> dropout -> classifier. ``plan`` is what it was built from.

    With ``features_only`` there is no head: ``forward`` returns the feature map at the end of each reduction
    level, described by ``feature_info`` (stage, module, channels, reduction per axis).
    """

    def __init__(self, plan: ir.Plan, features_only: bool = False):
        super().__init__()
        self.plan = plan
        self.features_only = features_only
        self.fused = False
        self.memory_format = torch.contiguous_format  # set_channels_last() changes it
        layers = Layers.of(plan)
        self.spatial = tuple(range(2, 2 + plan.dims))
        stem = plan.stem
        self.stem = ConvNormAct(layers, stem.in_channels, stem.out_channels, stem.kernel, stem.stride, stem.activation)
        stage_type = CheckpointedStage if plan.checkpointing else nn.Sequential  # same keys either way
        self.stages = nn.Sequential(
            *(stage_type(*(make_block(block, layers) for block in stage.blocks)) for stage in plan.stages)
        )
        self.feature_info = [
            {"stage": f.stage, "module": f"stages.{f.stage}", "channels": f.channels, "reduction": f.reduction} for f in plan.features
        ]
        if features_only:
            self._taps = frozenset(f.stage for f in plan.features)
            return
        head = plan.head.conv
        self.head = ConvNormAct(layers, head.in_channels, head.out_channels, head.kernel, head.stride, head.activation)
        self.dropout = nn.Dropout(plan.head.dropout)
        num_classes = plan.head.num_classes
        self.classifier = nn.Linear(head.out_channels, num_classes) if num_classes else nn.Identity()

    def set_channels_last(self) -> "Network":
        """Weights and inputs in channels-last order (NHWC / NDHWC), which oneDNN's CPU convolutions prefer for
        inference (benchmarks/peers.py: 3D inference 0.6x, 2D 0.7x the time; 3D training 1.7x, so not for that)."""
        self.memory_format = {2: torch.channels_last, 3: torch.channels_last_3d}[self.plan.dims]
        return self.to(memory_format=self.memory_format)

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, *S) -> (N, C_head, *S/32): the last feature map, before pooling."""
        x = x.contiguous(memory_format=self.memory_format)  # a no-op unless channels-last was asked for
        return self.head(self.stages(self.stem(x)))

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One feature map per reduction level, finest first."""
        x = self.stem(x.contiguous(memory_format=self.memory_format))
        maps = []
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self._taps:
                maps.append(x)
        return maps

    def forward(self, x: torch.Tensor):
        if self.features_only:
            return self.forward_pyramid(x)
        x = self.forward_features(x)  # (N, C_head, *S')
        x = x.mean(self.spatial)  # (N, C_head)
        return self.classifier(self.dropout(x))  # (N, num_classes)


class CheckpointedStage(nn.Sequential):
    """A stage whose blocks recompute their activations in backward instead of keeping them (activation
    checkpointing): memory of one block's internals at a time, for one more forward per block. Only while
    training with gradients; evaluation runs the blocks as they are."""

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        for block in self:
            if self.training and torch.is_grad_enabled():
                x = torch.utils.checkpoint.checkpoint(
                    block, x, use_reentrant=False, context_fn=lambda block=block: (contextlib.nullcontext(), _norms_untouched(block))
                )
            else:
                x = block(x)
        return x


@contextlib.contextmanager
def _norms_untouched(block: nn.Module):
    """The recomputation in backward is a second training-mode forward: without this, every batch norm in the
    block would update its running statistics twice per step."""
    norms = [m for m in block.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm) and m.track_running_stats]
    saved = [(m.running_mean.clone(), m.running_var.clone(), m.num_batches_tracked.clone()) for m in norms]
    try:
        yield
    finally:
        with torch.no_grad():
            for m, (mean, var, count) in zip(norms, saved):
                m.running_mean.copy_(mean)
                m.running_var.copy_(var)
                m.num_batches_tracked.copy_(count)


@torch.no_grad()
def fuse_norms(model: Network) -> Network:
    """Fold every batch norm into the conv before it, for inference: ``w' = w * g / sqrt(v + eps)``,
    ``b' = beta - m * g / sqrt(v + eps)``. The model is put in eval mode; it computes what it computed in eval
    mode, with one op fewer per conv. Other norms (group, instance, layer) depend on the input and stay."""
    model.eval()
    for module in model.modules():
        for conv_name, norm_name in _CONV_NORM_PAIRS:
            conv, norm = getattr(module, conv_name, None), getattr(module, norm_name, None)
            if isinstance(conv, nn.modules.conv._ConvNd) and isinstance(norm, nn.modules.batchnorm._BatchNorm):
                setattr(module, conv_name, fuse_conv_bn_eval(conv, norm))
                setattr(module, norm_name, nn.Identity())
    model.fused = True
    return model


# (conv, the norm right after it) in every module that has them: ConvNormAct, MBConv, FusedMBConv.
_CONV_NORM_PAIRS = (("conv", "bn"), ("conv_pw", "bn1"), ("conv_dw", "bn2"), ("conv_pwl", "bn3"), ("conv_exp", "bn1"), ("conv_pwl", "bn2"))


def instantiate(plan: ir.Plan, features_only: bool = False) -> Network:
    """The module's structure on the meta device: shapes and no memory, for counting or for loading weights into."""
    with torch.device("meta"):
        return Network(plan, features_only)


def build(
    plan: ir.Plan,
    *,
    seed: int | None = None,
    device: torch.device | str = "cpu",
    features_only: bool = False,
) -> Network:
    """Emit the module for ``plan``, initialised as TF EfficientNet and timm do.

    The module is laid out on the meta device and materialised once, so weights are written a single time
    (not by torch's default init and then again by ours). With ``seed``, weights are bit-identical across
    runs and processes; without it, torch's global generator is used.
    """
    model = instantiate(plan, features_only)
    model.to_empty(device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    init_weights(model, generator)
    return model


@torch.no_grad()
def init_weights(model: nn.Module, generator: torch.Generator | None = None) -> None:
    """Convs: normal(0, sqrt(2 / fan_out)) with fan_out = k^d * out / groups (TF ``conv_kernel_initializer``,
    timm ``_init_weight_goog``: grouped and depthwise convs are not over-scaled as torch's own fan_out is).
    Linear: uniform(+-1/sqrt(out_features)) (TF ``dense_kernel_initializer``, torchvision). Norms: 1 and 0."""
    for module in model.modules():
        if isinstance(module, nn.modules.conv._ConvNd):
            fan_out = math.prod(module.kernel_size) * module.out_channels // module.groups
            nn.init.normal_(module.weight, 0.0, math.sqrt(2.0 / fan_out), generator=generator)
            if module.bias is not None:
                nn.init.zeros_(module.bias)
        elif isinstance(module, NORMS):
            if module.weight is not None:
                nn.init.ones_(module.weight)
                nn.init.zeros_(module.bias)
            if getattr(module, "track_running_stats", False):
                module.reset_running_stats()
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.out_features)
            nn.init.uniform_(module.weight, -bound, bound, generator=generator)
            nn.init.zeros_(module.bias)
