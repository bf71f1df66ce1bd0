"""The blocks of a network as modules: a Plan block's layer list becomes one :class:`Block` (conv units, SE, layer
scale, the skip), the stem :class:`Stem`, the head's conv :class:`ConvNormAct`, a stage :class:`CheckpointedStage`. The encoder
(:mod:`archc.emit.network`) and the U-Net decoder (:mod:`archc.emit.decoder`) are both made of them.

Annotations here are evaluated (no ``from __future__ import annotations``): torch.fx copies the traced forward's
annotations into the code it generates, and TorchScript, scripting that code, cannot resolve them as strings.
"""

import contextlib
from collections import OrderedDict

import torch
import torch.nn.functional as F
import torch.utils.checkpoint
from torch import nn

from .. import ir
from ..kinds.layers import table
from .fusion import conv_norm_act, one_by_one
from .ops import GATE, LayerFactory


class ConvNormAct(nn.Sequential):
    """conv -> [norm] -> activation: the stem and the head's 1x1 conv (the efficient head's has a bias, no norm)."""

    def __init__(self, layers: LayerFactory, layer: ir.ConvLayer):
        unit = layer.unit
        modules = OrderedDict(conv=layers.conv(unit.in_channels, unit.out_channels, unit.kernel, unit.stride, bias=unit.bias))
        if unit.norm:
            modules[unit.norm] = layers.norm(unit.out_channels)
        modules[unit.act] = layers.act(unit.activation)
        super().__init__(modules)
        self.units = (unit,)  # as a Block's: BN folding reads them
        self.fast_paths = True  # Network.set_fast_paths

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles the modules one by one (the fast paths are Python)
            for module in self:
                x = module(x)
            return x
        unit = self.units[0]
        run = conv_norm_act if self.fast_paths else one_by_one
        return run(x, self.conv, getattr(self, unit.norm) if unit.norm else None, getattr(self, unit.act))


class Stem(nn.Module):
    """The network's first layers (an :class:`archc.ir.Stem`): its conv units under their names (``conv``, ``bn``,
    ``act``; or ``conv1``, ``bn1``, ...), then ``pool`` where it has one. ``convs`` is the map before the pool, where
    timm taps a ResNet's stem for its features."""

    def __init__(self, layers: LayerFactory, stem: ir.Stem):
        super().__init__()
        calls = []
        for unit in stem.units:
            for name, module in _conv_unit(unit, layers)[0]:
                self.add_module(name, module)
            calls.append((unit.conv, unit.norm, unit.act))
        self.units = stem.units  # as a Block's: BN folding reads them
        self.calls = tuple(calls)
        self.in_channels = stem.in_channels
        self.pool = layers.pool(stem.pool) if stem.pool else None
        self.fast_paths = True  # Network.set_fast_paths

    def first_conv(self) -> nn.Module:
        return getattr(self, self.units[0].conv)

    def convs(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles the modules one by one (the fast paths are Python)
            for name, module in self.named_children():
                if name != "pool":
                    x = module(x)
        else:
            run = conv_norm_act if self.fast_paths else one_by_one
            for call in self.calls:
                x = run(x, *(getattr(self, name) if name else None for name in call))
        return x

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        x = self.convs(x)
        if self.pool is not None:
            x = self.pool(x)
        return x


class MixedConv(nn.ModuleList):
    """One conv per channel group, the outputs concatenated (MixNet's MixConv, Tan & Le 2019): depthwise parts with
    their own kernels, or 1x1 parts (grouped pointwise). Parts are ``0``, ``1``, ... as in timm's ``MixedConv2d``,
    so their state_dict keys are ``conv_dw.0.weight``, ``conv_dw.1.weight``."""

    def __init__(self, layers: LayerFactory, unit: ir.ConvUnit):
        super().__init__(layers.conv(c_in, c_out, kernel, unit.stride, groups=groups, bias=unit.bias) for c_in, c_out, kernel, groups in unit.parts)
        self.splits = [c_in for c_in, _, _, _ in unit.parts]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        parts = torch.split(x, self.splits, dim=1)  # indexed, not zipped: torch.fx cannot iterate a traced value
        return torch.cat([conv(parts[i]) for i, conv in enumerate(self)], dim=1)


class LayerScale(nn.Module):
    """A learned per-channel scale of the residual branch (timm ``LayerScale2d``: key ``gamma``)."""

    def __init__(self, channels: int, init: float, dims: int):
        super().__init__()
        self.init = init
        self.gamma = nn.Parameter(torch.full((channels,), init))
        self.shape = (channels,) + (1,) * dims  # broadcast over every spatial axis

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x * self.gamma.view(self.shape)


class GlobalResponseNorm(nn.Module):
    """ConvNeXt-V2's GRN (timm ``GlobalResponseNorm``, keys ``weight`` and ``bias``): each channel's L2 norm over every
    spatial axis, divided by its mean over the channels, rescales the map; weight and bias start at 0 (identity)."""

    def __init__(self, channels: int, eps: float, dims: int):
        super().__init__()
        self.eps = eps
        self.spatial = tuple(range(2, 2 + dims))
        self.shape = (1, channels) + (1,) * dims
        self.weight = nn.Parameter(torch.zeros(channels))
        self.bias = nn.Parameter(torch.zeros(channels))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        g = x.norm(p=2, dim=self.spatial, keepdim=True)  # (N, C, 1, ...)
        n = g / (g.mean(dim=1, keepdim=True) + self.eps)
        return x + torch.addcmul(self.bias.view(self.shape), self.weight.view(self.shape), x * n)


class SqueezeExcite(nn.Module):
    """Channel attention (Hu et al. 2018): global average, 1x1 reduce, activation, 1x1 expand, gate."""

    def __init__(self, layers: LayerFactory, channels: int, squeeze: int, activation: str, gate: str):
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


class EfficientChannelAttention(nn.Module):
    """ECA (Wang et al. 2020): global average, a 1D conv across the channels, the gate (timm ``EcaModule``: ``conv``)."""

    def __init__(self, kernel: int, gate: str, dims: int):
        super().__init__()
        self.spatial = tuple(range(2, 2 + dims))
        self.conv = nn.Conv1d(1, 1, kernel, padding=(kernel - 1) // 2, bias=False)
        self.gate = GATE[gate]()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        s = self.conv(x.mean(self.spatial).unsqueeze(1))  # (N, 1, C): the channels as a sequence
        s = self.gate(s).view(x.shape[:2] + (1,) * len(self.spatial))
        return x * s


class ChannelPad(nn.Module):
    """Zero channels after the input's own, up to ``out_channels`` (the parameter-free skip of MONAI's ResNet, shortcut_type
    "A"): the same numbers as MONAI's ``torch.cat([x, zeros])``."""

    def __init__(self, in_channels: int, out_channels: int, dims: int):
        super().__init__()
        self.pads = [0, 0] * dims + [0, out_channels - in_channels]  # F.pad lists the last axis first: spatial axes untouched

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return F.pad(x, self.pads)


class DropPath(nn.Module):
    """Stochastic depth (Huang et al. 2016): drop the residual branch per sample while training."""

    def __init__(self, rate: float):
        super().__init__()
        self.rate = rate

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training or self.rate == 0.0:
            return x
        keep = 1.0 - self.rate
        mask = x.new_empty([x.shape[0]] + [1] * (x.ndim - 1)).bernoulli_(keep)  # (N, 1, ...)
        return x * mask.div_(keep)

    def extra_repr(self) -> str:
        return f"rate={self.rate:.4f}"


class Block(nn.Module):
    """One block of the Plan, built from its layer list: each conv unit's conv, norm and activation under the
    unit's names (``conv_dw``, ``bn2``, ``act2``), the SE as ``se``, then the skip (through ``downsample`` where the
    Plan gives it layers) with stochastic depth, then ``act_after`` where the Plan has one (ResNet).
    Every block type (MBConv, Fused-MBConv, conv) is this one module; only its layer list differs."""

    def __init__(self, block: ir.Block, layers: LayerFactory):
        super().__init__()
        self.units = block.layers  # the Plan's records: forward and BN folding follow them
        steps, calls = [], []
        for unit in block.layers:
            modules, call = _MODULES[type(unit)](unit, layers)
            for name, module in modules:
                self.add_module(name, module)
                steps.append(name)
            calls.append(call)
        self.steps = tuple(steps)  # module names in the order forward applies them
        self.calls = tuple(calls)  # the same, a conv unit's (conv, norm, act) as one call: emit.fusion runs them
        self.fast_paths = True  # Network.set_fast_paths
        self.has_residual = block.residual
        self.drop_path = DropPath(block.drop_path) if block.residual and block.drop_path > 0 else nn.Identity()
        # The skip's layers (ResNet's projection), as torchvision's and timm's BasicBlock hold them: None, or a
        # Sequential (``downsample.0``, ``downsample.1``) that carries its units for BN folding.
        self.downsample = None
        if block.shortcut:
            self.downsample = nn.Sequential(OrderedDict(module for unit in block.shortcut for module in _MODULES[type(unit)](unit, layers)[0]))
            self.downsample.units = block.shortcut
        self.act_after = layers.act(block.activation_after) if block.activation_after else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shortcut = x
        if torch.jit.is_scripting():  # TorchScript: the modules one by one, in the order they were added (``steps``)
            for name, module in self.named_children():
                if name != "drop_path" and name != "downsample" and name != "act_after":
                    x = module(x)
        else:
            run = conv_norm_act if self.fast_paths else one_by_one
            for call in self.calls:  # e.g. (conv_pw, bn1, act1), (conv_dw, bn2, act2), (se,), (conv_pwl, bn3, None)
                if len(call) == 1:
                    x = getattr(self, call[0])(x)
                else:
                    x = run(x, *(getattr(self, name) if name else None for name in call))
        if self.downsample is not None:
            shortcut = self.downsample(shortcut)
        if self.has_residual:
            x = self.drop_path(x) + shortcut
        if self.act_after is not None:
            x = self.act_after(x)
        return x


def _conv_unit(unit: ir.ConvUnit, layers: LayerFactory) -> tuple[list, tuple]:
    conv = MixedConv(layers, unit) if unit.kernels else layers.conv(unit.in_channels, unit.out_channels, unit.kernel, unit.stride,
                                                                     groups=unit.groups, bias=unit.bias)
    modules = [(unit.conv, conv)] + ([(unit.norm, layers.norm(unit.out_channels))] if unit.norm else [])
    modules += [(unit.act, layers.act(unit.activation))] if unit.act else []
    return modules, (unit.conv, unit.norm, unit.act)


# Each layer kind's modules (name, module) and its call in forward: a conv unit's (conv, norm, act) runs as one call.
_MODULES = table("emit.blocks", {
    ir.ConvUnit: _conv_unit,
    ir.SqueezeExcite: lambda unit, layers: ([(unit.name, SqueezeExcite(layers, unit.channels, unit.squeeze, unit.activation, unit.gate))], (unit.name,)),
    ir.ECA: lambda unit, layers: ([(unit.name, EfficientChannelAttention(unit.kernel, unit.gate, layers.dims))], (unit.name,)),
    ir.LayerScale: lambda unit, layers: ([(unit.name, LayerScale(unit.channels, unit.init, layers.dims))], (unit.name,)),
    ir.NormLayer: lambda unit, layers: ([(unit.name, layers.norm(unit.channels))], (unit.name,)),
    ir.GRN: lambda unit, layers: ([(unit.name, GlobalResponseNorm(unit.channels, unit.eps, layers.dims))], (unit.name,)),
    ir.Pool: lambda unit, layers: ([(unit.name, layers.pool(unit))], (unit.name,)),
    ir.ChannelPad: lambda unit, layers: ([(unit.name, ChannelPad(unit.in_channels, unit.out_channels, layers.dims))], (unit.name,)),
})


class CheckpointedStage(nn.Sequential):
    """A stage whose blocks, while ``checkpointing`` is on, recompute their activations in backward instead of
    keeping them (activation checkpointing): memory of one block's internals at a time, for one more forward
    per block. Only while training with gradients; evaluation runs the blocks as they are. The switch is an
    attribute, not a module, so turning it (``Network.set_grad_checkpointing``) leaves the state_dict as it is."""

    def __init__(self, *blocks: nn.Module, checkpointing: bool = False):
        super().__init__(*blocks)
        self.checkpointing = checkpointing

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if torch.jit.is_scripting():  # TorchScript compiles no checkpointing (its recomputation is Python): the blocks as they are
            for block in self:
                x = block(x)
            return x
        for block in self:
            if self.checkpointing and self.training and torch.is_grad_enabled():
                x = self._checkpointed(block, x)
            else:
                x = block(x)
        return x

    @staticmethod
    def _checkpointed(block: nn.Module, x: torch.Tensor) -> torch.Tensor:
        return torch.utils.checkpoint.checkpoint(
            block, x, use_reentrant=False, context_fn=lambda: (contextlib.nullcontext(), _norms_untouched(block))
        )


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
