"""build(plan) -> nn.Module: a direct translation of Plan nodes, one code path for 1D, 2D and 3D. The network is
the stem, the stages of blocks (:mod:`archc.emit.blocks`), then a head, the feature maps, or a U-Net decoder
(:mod:`archc.emit.decoder`).

Submodule names are roles (``conv_pw``, ``conv_dw``, ``se``, ``conv_pwl`` as in timm) because they are
state_dict keys that checkpoints depend on: rename one and every saved model breaks.

Annotations here are evaluated (no ``from __future__ import annotations``): torch.fx copies the traced forward's
annotations into the code it generates, and TorchScript, scripting that code, cannot resolve them as strings.
"""

import copy
import dataclasses
import math
from collections import OrderedDict

import torch
from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval

from .. import ir
from ..errors import ArgumentError, EmitError
from ..kinds.decoders import decoder_kind
from .blocks import Block, CheckpointedStage, ConvNormAct, GlobalResponseNorm, LayerScale, MixedConv, Stem
from .depthwise import plain_only
from .fusion import inference_layout
from .ops import NORMS, LayerFactory

# What timm's data pipeline normalises inputs with (``timm.data.IMAGENET_DEFAULT_MEAN`` / ``_STD``). A model
# with other than 3 input channels gets the mean of the three for every channel: that is what
# ``weights.adapt_input_channels`` assumes of each channel when it adapts an RGB stem (a grey image seen as
# the sum of R, G and B), and for a model trained from scratch any fixed per-channel values do.
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class Network(nn.Module):
    """stem -> stages -> head -> global average pool -> dropout -> classifier. ``plan`` is what it was built from.

    A features Plan (``features_only``) has no head: ``forward`` returns the feature map at the end of each
    reduction level, described by ``feature_info`` (stage, module, channels, reduction per axis). A U-Net Plan
    (``plan.decoder``) has none either: those maps go through ``decoder`` (:mod:`archc.emit.decoder`), which
    returns (N, num_classes, *S) at the input's size.
    """

    __constants__ = ["features_only"]  # TorchScript compiles only the branch of forward that the model takes

    def __init__(self, plan: ir.Plan):
        super().__init__()
        self.plan = plan
        self.features_only = plan.output == "features"
        self.fused = False
        self.channels_last = False  # set_channels_last() changes it (a flag: torch.save cannot pickle a memory_format)
        self.fast_paths = True  # set_fast_paths() changes it
        layers = LayerFactory.of(plan)
        self.spatial = tuple(range(2, 2 + plan.dims))
        self.stem = Stem(layers, plan.stem)
        self.stages = nn.Sequential(
            *(CheckpointedStage(*(Block(block, layers) for block in stage.blocks), checkpointing=plan.checkpointing)
              for stage in plan.stages)
        )
        self.feature_info = FeatureInfo.of(plan.features)
        self.in_chans = plan.in_channels  # timm's name for the input's channels
        self.pools_first = False
        self._taps = tuple(f.stage for f in plan.features)
        if plan.decoder is not None:
            self.decoder = decoder_kind(plan.decoder.type).part("module")(plan, layers)  # emit.decoder's UNetDecoder for a U-Net
        if plan.head is None:  # a features encoder or a U-Net: no classifier
            return
        head = plan.head
        # conv: the head's conv in forward_features, before pooling; efficient: in forward_head, after it; pool: none
        self.pools_first = head.type != "conv"
        if head.conv:
            self.head = ConvNormAct(layers, head.conv)
        elif head.type == "norm":  # the pooled vector normalised (ConvNeXt, timm NormMlpClassifierHead: key head.norm)
            self.head = nn.Sequential(OrderedDict(norm=layers.norm(head.in_channels)))
        else:
            self.head = nn.Identity()
        self.dropout = nn.Dropout(head.dropout)
        self.classifier = nn.Linear(head.out_channels, head.num_classes) if head.num_classes else nn.Identity()

    def set_channels_last(self) -> "Network":
        """Weights, inputs and outputs in channels-last order (NHWC / NDHWC) in training too (inference runs in
        it anyway: see :meth:`layout`). 3D training is slower in it (benchmarks/peers.py). 1D models have no such order."""
        if self.plan.dims == 1:
            raise ArgumentError("channels_last is a memory order of 2D and 3D tensors; a 1D model has none")
        self.channels_last = True
        return self.to(memory_format=self.memory_format)

    def fuse_norms(self) -> "Network":
        """Fold every batch norm into the conv before it, once and for all, for inference (:func:`fuse_norms`)."""
        return fuse_norms(self)

    @property
    def memory_format(self) -> torch.memory_format:
        """The model's own memory order: the ordinary one, or channels-last after :meth:`set_channels_last`."""
        if not self.channels_last:
            return torch.contiguous_format
        return torch.channels_last if len(self.spatial) == 2 else torch.channels_last_3d

    def layout(self, x: torch.Tensor) -> torch.memory_format:
        """The memory order the network computes ``x`` in: channels-last for inference (eval mode, autograd off),
        where oneDNN's CPU convolutions are fastest with the norms folded in (``emit.fusion``); otherwise the
        model's own (``set_channels_last``). Outputs are returned in the model's own order either way."""
        if self.fast_paths and not self.training and not torch.is_grad_enabled() and not plain_only():
            return inference_layout(x)
        return self.memory_format

    def set_fast_paths(self, enable: bool = True) -> "Network":
        """Run conv units by ``emit.fusion``'s paths (the default: inference with the norms folded in and
        channels-last, training with norm and activation as one Function), or with False module by module in the
        model's own layout: the ops the reference implementations run, in their order, for comparing outputs
        with theirs to the last bit. The fast paths equal it to float32 rounding, which a network whose
        activations grow from stage to stage can amplify."""
        for module in self.modules():
            if hasattr(module, "fast_paths"):
                module.fast_paths = bool(enable)
        return self

    def forward_features(self, x: torch.Tensor) -> torch.Tensor:
        """(N, C_in, *S) -> (N, num_features, *S/32): the last feature map, before pooling (with the efficient head,
        the last stage's: its conv runs after the pooling, in ``forward_head``, as timm's MobileNetV3 does)."""
        return self._own_layout(self._features(x))

    def _features(self, x: torch.Tensor) -> torch.Tensor:
        """``forward_features``' map, in the layout it was computed in (pooling reads either)."""
        x = self.stages(self.stem(self._input(x)))
        return x if self.pools_first else self.head(x)

    def forward_pyramid(self, x: torch.Tensor) -> list[torch.Tensor]:
        """One feature map per reduction level, finest first, in the layout they were computed in (``forward``
        returns them in the model's own)."""
        x = self.stem.convs(self._input(x))
        maps = [x] if -1 in self._taps else []  # the stem's map (before its pool), where the network reduces again after it
        if self.stem.pool is not None:
            x = self.stem.pool(x)
        for index, stage in enumerate(self.stages):
            x = stage(x)
            if index in self._taps:
                maps.append(x)
        return maps

    def _input(self, x: torch.Tensor) -> torch.Tensor:
        """``x`` checked against the input the network takes, (N, C_in, *S) with the stem's C_in, in the layout the
        network computes it in (:meth:`layout`): every entry point goes through here. In TorchScript as it comes."""
        if torch.jit.is_scripting():
            return x
        self._check_input(x)
        return x.to(memory_format=self.layout(x))

    @torch.jit.unused
    def _check_input(self, x: torch.Tensor) -> None:
        """Not while traced: TorchScript's tracer would record the check as tensor arithmetic, and an FX proxy is not
        a tensor."""
        if isinstance(x, torch.Tensor) and not torch.jit.is_tracing() and (x.ndim != 2 + self.plan.dims or x.shape[1] != self.stem.in_channels):
            axes = ("L",) if self.plan.dims == 1 else ("D", "H", "W")[-self.plan.dims:]
            raise EmitError(f"expected input of shape (N, C, {', '.join(axes)}) with C={self.stem.in_channels}, got {tuple(x.shape)}")

    def forward_head(self, x: torch.Tensor, pre_logits: bool = False) -> torch.Tensor:
        """(N, C_head, *S') -> (N, num_classes): global average pool, dropout, classifier. With ``pre_logits`` the
        pooled features (N, num_features), after dropout as in timm (dropout does nothing in eval mode)."""
        if not torch.jit.is_scripting():  # TorchScript compiles only a classifier's forward_head
            self._needs_head("forward_head")
        if self.pools_first:
            x = self.head(x.mean(self.spatial, keepdim=True)).flatten(1)  # (N, C, 1, ...) -> (N, C_head)
        else:
            x = x.mean(self.spatial)  # (N, C_head)
        x = self.dropout(x)
        return x if pre_logits else self.classifier(x)  # (N, num_classes)

    def forward(self, x: torch.Tensor):
        if torch.jit.is_scripting():
            return self._forward_scripted(x)
        if self.features_only:
            return self._own_layout(self.forward_pyramid(x))
        if self.plan.decoder is not None:
            return self._own_layout(self.decoder(self.forward_pyramid(x), x.shape[2:]))  # (N, num_classes, *S)
        return self.forward_head(self._features(x))  # no copy into the model's layout before pooling

    def _forward_scripted(self, x: torch.Tensor):
        """``forward`` as TorchScript compiles it (``torch.jit.script``): the fast paths and the memory layouts are
        Python (a memory format cannot be a TorchScript attribute), so the scripted model runs module by module in
        the input's layout. Only the branch of this model's kind is compiled: ``features_only`` is Final, and
        ``hasattr`` is decided as the model is compiled."""
        if self.features_only:
            return self.forward_pyramid(x)
        if hasattr(self, "decoder"):
            return self.decoder(self.forward_pyramid(x), x.shape[2:])
        return self.forward_head(self._features(x))

    def _own_layout(self, output):
        """A map, or a list of maps (the feature levels, a decoder's deep supervision), in the model's memory order."""
        if isinstance(output, list):
            return [y.contiguous(memory_format=self.memory_format) for y in output]
        return output.contiguous(memory_format=self.memory_format)

    # timm's model API (timm.models.efficientnet.EfficientNet): training code written for timm takes this module.

    @property
    def num_features(self) -> int:
        """Width of ``forward_features``' output (timm's ``num_features``): the head's, or with the efficient head the
        last stage's, which the head's conv reads after pooling."""
        head = self._head("num_features")
        return head.in_channels if self.pools_first else head.out_channels

    @property
    def head_hidden_size(self) -> int:
        """As timm's: the width ``forward_head(x, pre_logits=True)`` returns."""
        return self._head("head_hidden_size").out_channels

    @property
    def num_classes(self) -> int:
        return self._head("num_classes").num_classes

    def get_classifier(self) -> nn.Module:
        self._needs_head("get_classifier")
        return self.classifier

    def reset_classifier(self, num_classes: int, global_pool: str | None = None) -> None:
        """A new classifier for ``num_classes`` (``nn.Identity`` for 0), initialised as :func:`build` initialises
        linears, on the old one's device and dtype and in the module's mode. ``self.plan`` becomes the Plan with
        that many classes, so ``analyze(model.plan)`` and ``archc.save`` describe the module as it now is.
        ``global_pool`` is accepted as timm's argument; archc pools by average only (``None`` or ``"avg"``)."""
        self._needs_head("reset_classifier")
        if global_pool not in (None, "avg"):
            raise ArgumentError(f"global_pool={global_pool!r}: archc's head pools by average only (None or 'avg')")
        if isinstance(num_classes, bool) or not isinstance(num_classes, int) or num_classes < 0:
            raise ArgumentError(f"num_classes must be a non-negative integer, got {num_classes!r}")
        like = self.stem.first_conv().weight
        if num_classes:
            classifier = nn.Linear(self.head_hidden_size, num_classes, device=like.device, dtype=like.dtype)
            init_weights(classifier)
        else:
            classifier = nn.Identity()
        self.classifier = classifier.train(self.training)
        self.plan = dataclasses.replace(self.plan, head=dataclasses.replace(self.plan.head, num_classes=num_classes))

    def set_grad_checkpointing(self, enable: bool = True) -> None:
        """Recompute each block's activations in backward (while training), or stop: the same switch as the
        spec's ``checkpointing``, at run time. The state_dict keys do not change; ``self.plan`` follows."""
        for stage in self.modules():  # the encoder's stages and a decoder's levels
            if isinstance(stage, CheckpointedStage):
                stage.checkpointing = bool(enable)
        self.plan = dataclasses.replace(self.plan, checkpointing=bool(enable))

    @property
    def pretrained_cfg(self) -> dict:
        """timm's description of the model's input, which ``timm.data.resolve_data_config(model=...)`` reads:
        input size (channels, *plan.resolution), normalisation, resize and crop, and where the first conv and
        the classifier are. A new dict each time, derived from ``self.plan``."""
        plan = self.plan
        if plan.in_channels == 3:
            mean, std = IMAGENET_MEAN, IMAGENET_STD
        else:
            mean = (sum(IMAGENET_MEAN) / 3,) * plan.in_channels
            std = (sum(IMAGENET_STD) / 3,) * plan.in_channels
        cfg = {
            "architecture": plan.name,
            "input_size": (plan.in_channels, *plan.resolution),
            "interpolation": "bicubic",
            "crop_pct": 0.875,
            "crop_mode": "center",
            "mean": mean,
            "std": std,
            "first_conv": f"stem.{self.plan.stem.units[0].conv}",
        }
        if plan.head is not None:
            cfg.update(num_classes=plan.head.num_classes, classifier="classifier",
                       pool_size=tuple(-(-size // r) for size, r in zip(plan.resolution, plan.features[-1].reduction)))
        return cfg

    @property
    def default_cfg(self) -> dict:
        """timm's older name for :attr:`pretrained_cfg`."""
        return self.pretrained_cfg

    def forward_intermediates(
        self,
        x: torch.Tensor,
        indices: int | list[int] | tuple[int, ...] | None = None,
        norm: bool = False,
        stop_early: bool = False,
        output_fmt: str = "NCHW",
        intermediates_only: bool = False,
        extra_blocks: bool = False,
    ):
        """timm 1.0's ``forward_intermediates`` (``timm.models.efficientnet.EfficientNet``): the maps of the feature
        levels ``indices`` selects and, unless ``intermediates_only``, ``forward_features``' output, as
        ``(final, [maps])``. ``indices``: None for every level, an int n for the last n, a list for those (negative
        from the end), counted as ``feature_info`` counts them, in 1D, 2D and 3D alike; with ``extra_blocks`` they
        count the stem's map (0) and every stage's (1, 2, ...) instead. ``stop_early`` runs no stage past the
        deepest map asked for (the head then does not run either). ``norm`` is accepted as timm's and does nothing:
        no norm follows the last stage. ``output_fmt`` is timm's name for channels first, "NCHW", whatever ``dims``;
        the maps are in the model's own memory order, as ``forward``'s."""
        self._no_decoder("forward_intermediates")
        if output_fmt != "NCHW":
            raise ArgumentError(f"forward_intermediates: output_fmt={output_fmt!r}; archc returns channels first, timm's 'NCHW' (in 1D and 3D too)")
        ends = self._tap_ends(extra_blocks)
        take, deepest = take_indices(len(ends), indices, "forward_intermediates")
        wanted = {ends[i] for i in take}  # taps by stages run before them: 0 is the stem's map
        x = self.stem.convs(self._input(x))
        maps = [x] if 0 in wanted else []
        if self.stem.pool is not None:
            x = self.stem.pool(x)
        ran = 0
        for stage in self.stages[: ends[deepest]] if stop_early else self.stages:
            x = stage(x)
            ran += 1
            if ran in wanted:
                maps.append(x)
        maps = self._own_layout(maps)
        if intermediates_only:
            return maps
        if ran == len(self.stages) and self.plan.head is not None and not self.pools_first:
            x = self.head(x)  # the head's conv belongs to forward_features (with the efficient head, to forward_head)
        return self._own_layout(x), maps

    def prune_intermediate_layers(
        self,
        indices: int | list[int] | tuple[int, ...] = 1,
        prune_norm: bool = False,
        prune_head: bool = True,
        extra_blocks: bool = False,
    ) -> list[int]:
        """timm 1.0's ``prune_intermediate_layers``: drop the stages past the deepest level of ``indices`` (counted
        as :meth:`forward_intermediates` counts them) and, when stages go or with ``prune_head`` (or ``prune_norm``
        where the head's conv is part of ``forward_features``), the head and classifier. Returns the indices as
        absolute ones, for ``forward_intermediates(x, indices=...)``.

        What remains is a ``features_only`` encoder of the levels kept, and ``self.plan`` says so: ``forward``
        returns their maps (timm's pruned model returns the last map unpooled), ``feature_info`` lists them with
        their indices unchanged, and ``analyze(model.plan)`` counts what is left. Pruning is for inference and
        fine-tuning in place: ``archc.save`` refuses a pruned model, whose spec no longer describes it."""
        self._no_decoder("prune_intermediate_layers")
        ends = self._tap_ends(extra_blocks)
        take, deepest = take_indices(len(ends), indices, "prune_intermediate_layers")
        kept = ends[deepest]  # stages kept
        # prune_norm: what follows the last stage in forward_features, the head's conv (with the efficient head,
        # which runs after pooling, nothing: timm's MobileNetV3 keeps its head then too)
        head_goes = self.plan.head is not None and (prune_head or (prune_norm and not self.pools_first))
        if kept == len(self.stages) and not head_goes:
            return take  # timm too leaves the model as it is
        for name in ("head", "dropout", "classifier"):
            if hasattr(self, name):
                delattr(self, name)
        self.stages = self.stages[:kept]
        features = tuple(f for f in self.plan.features if f.stage < kept)
        self.plan = dataclasses.replace(self.plan, stages=self.plan.stages[:kept], head=None, features=features)
        self.features_only, self.pools_first, self.pruned = True, False, True
        self._taps = frozenset(f.stage for f in features)
        self.feature_info = FeatureInfo.of(features)
        return take

    def _tap_ends(self, extra_blocks: bool) -> list[int]:
        """For each index of forward_intermediates, the number of stages run before its map: ``feature_info``'s
        levels (the stem's map, archc's stage -1, is 0), or with ``extra_blocks`` the stem and every stage."""
        if extra_blocks:
            return list(range(len(self.stages) + 1))
        return [f.stage + 1 for f in self.plan.features]

    def _no_decoder(self, name: str) -> None:
        if self.plan.decoder is not None:
            raise EmitError(f"{name}: {decoder_kind(self.plan.decoder.type).title} (a spec with a decoder) has no single feature path to tap; "
                            "forward_pyramid(x) gives its encoder's maps")

    def _head(self, name: str) -> ir.Head:
        if self.plan.head is None:  # an AttributeError, so hasattr() says a features encoder has no such thing
            raise AttributeError(f"{self._headless()} has no {name}")
        return self.plan.head

    def _needs_head(self, name: str) -> None:
        if self.plan.head is None:
            raise EmitError(f"{name}: {self._headless()} has no head or classifier")

    def _headless(self) -> str:
        return f"{decoder_kind(self.plan.decoder.type).title} (a spec with a decoder)" if self.plan.decoder is not None else "a features encoder (features_only)"


# TorchScript compiles a module's properties with its forward; the timm API's are Python (dicts, the Plan).
Network.__jit_unused_properties__ = [name for name, value in vars(Network).items() if isinstance(value, property)]


class FeatureInfo(list):
    """The feature levels of a network (``plan.features``) as a list of dicts that carry timm's keys and archc's:

    - timm's (``timm.models._features.FeatureInfo`` wraps the list): ``num_chs``, ``reduction`` (one int: input
      size over map size), ``module`` (where the level ends: ``stages.4``, or ``stem``) and ``index``;
    - archc's: ``stage`` (the level's last stage, -1 for the stem's map; timm's ``stage`` counts the stem as 0, so
      archc's is one less), ``channels`` (= ``num_chs``) and ``reduction_per_axis`` (a tuple, one per spatial axis).

    Where the axes are reduced unevenly (an anisotropic 3D network, e.g. (1, 2, 2)) no single number is true of
    all of them, so ``reduction`` is the per-axis tuple there: code that needs timm's int fails at once (timm's
    ``FeatureInfo`` refuses to compare it) rather than computing wrong sizes.

    The list has timm's accessors too, each taking ``idx`` as timm's do: None for every level, an int for one,
    a list for those.
    """

    @classmethod
    def of(cls, levels: tuple[ir.FeatureLevel, ...]) -> "FeatureInfo":
        return cls(
            {
                "num_chs": level.channels,
                "reduction": level.reduction[0] if len(set(level.reduction)) == 1 else level.reduction,
                "module": "stem" if level.stage < 0 else f"stages.{level.stage}",
                "index": index,
                "stage": level.stage,
                "channels": level.channels,
                "reduction_per_axis": level.reduction,
            }
            for index, level in enumerate(levels)
        )

    @property
    def out_indices(self) -> tuple[int, ...]:
        """Every level is an output (timm: the indices of the levels the model returns)."""
        return tuple(range(len(self)))

    def get(self, key: str, idx: int | list[int] | None = None):
        """The value of ``key`` at ``idx``."""
        dicts = self.get_dicts(idx=idx)
        return dicts[key] if isinstance(dicts, dict) else [d[key] for d in dicts]

    def get_dicts(self, keys: list[str] | None = None, idx: int | list[int] | None = None):
        indices = self.out_indices if idx is None else idx
        if isinstance(indices, int):
            return self[indices] if keys is None else {key: self[indices][key] for key in keys}
        return [self[i] if keys is None else {key: self[i][key] for key in keys} for i in indices]

    def channels(self, idx: int | list[int] | None = None):
        return self.get("num_chs", idx)

    def reduction(self, idx: int | list[int] | None = None):
        return self.get("reduction", idx)

    def module_name(self, idx: int | list[int] | None = None):
        return self.get("module", idx)


def take_indices(count: int, indices, caller: str) -> tuple[list[int], int]:
    """timm's ``feature_take_indices`` (timm.models._features): ``indices`` as absolute indices among ``count``
    (None: all; an int n: the last n; a list: those, negative from the end) and the largest. Out of range is an
    ``EmitError`` here (timm's is an ``AssertionError``)."""
    if indices is None:
        indices = count
    if isinstance(indices, int) and not isinstance(indices, bool):
        if not 0 < indices <= count:
            raise ArgumentError(f"{caller}: indices={indices} asks for the last {indices} maps; this network has {count} (1 to {count})")
        take = list(range(count - indices, count))
    elif isinstance(indices, (list, tuple)) and indices and all(isinstance(i, int) and not isinstance(i, bool) for i in indices):
        take = [count + i if i < 0 else i for i in indices]
        bad = [i for i, t in zip(indices, take) if not 0 <= t < count]
        if bad:
            raise ArgumentError(f"{caller}: index {bad[0]} is out of range; this network has {count} maps (0 to {count - 1}, or -{count} to -1)")
    else:
        raise ArgumentError(f"{caller}: indices must be None, a positive int (the last n maps) or a non-empty list of ints, got {indices!r}")
    return take, max(take)


@torch.no_grad()
def fuse_norms(model: Network) -> Network:
    """Fold every batch norm into the conv before it, for inference: ``w' = w * g / sqrt(v + eps)``,
    ``b' = beta - m * g / sqrt(v + eps)``. The model is put in eval mode; it computes what it computed in eval
    mode, with one op fewer per conv. Other norms (group, instance, layer) depend on the input and stay.
    Which norm follows which conv is read from the Plan's conv units, for the stem and head as for blocks."""
    model.eval()
    for module in model.modules():
        for conv_name, norm_name in (pair for unit in getattr(module, "units", ()) for pair in unit.folds):
            conv, norm = getattr(module, conv_name), getattr(module, norm_name)
            if isinstance(norm, nn.modules.batchnorm._BatchNorm):
                setattr(module, conv_name, _fused(conv, norm))
                setattr(module, norm_name, nn.Identity())
    model.fused = True
    return model


def _fused(conv: nn.Module, norm: nn.modules.batchnorm._BatchNorm) -> nn.Module:
    if not isinstance(conv, MixedConv):
        return fuse_conv_bn_eval(conv, norm)
    # Each part's output channels have their own slice of the norm's statistics and affine parameters.
    start = 0
    for index, part in enumerate(conv):
        stop = start + part.out_channels
        piece = copy.deepcopy(norm)
        for name in ("weight", "bias", "running_mean", "running_var"):
            getattr(piece, name).data = getattr(norm, name)[start:stop].clone()
        piece.num_features = part.out_channels
        conv[index] = fuse_conv_bn_eval(part, piece)
        start = stop
    return conv


def instantiate(plan: ir.Plan) -> Network:
    """The module's structure on the meta device: shapes and no memory, for counting or for loading weights into."""
    with torch.device("meta"):
        return Network(plan)


def build(
    plan: ir.Plan,
    *,
    seed: int | None = None,
    device: torch.device | str | None = None,
) -> Network:
    """Emit the module for ``plan``, initialised as TF EfficientNet and timm do, on ``device`` (None: torch's
    default device, as torch's own modules are: the CPU, or e.g. the meta device inside ``with torch.device("meta")``).

    The module is laid out on the meta device and materialised once, so weights are written a single time
    (not by torch's default init and then again by ours). With ``seed``, weights are bit-identical across
    runs and processes; without it, torch's global generator is used. On the meta device nothing is allocated
    and there are no values to initialise.
    """
    device = torch.get_default_device() if device is None else torch.device(device)
    model = instantiate(plan)
    if device.type == "meta":
        return model
    model.to_empty(device=device)
    generator = None
    if seed is not None:
        generator = torch.Generator(device=device).manual_seed(seed)
    init_weights(model, generator)
    if plan.zero_init_last:
        zero_last_norms(model, plan)
    return model


@torch.no_grad()
def zero_last_norms(model: nn.Module, plan: ir.Plan) -> None:
    """Each residual block's last norm in its branch (a ResNet bottleneck's ``bn3``) gets weight 0: the branch then adds
    nothing at first and the block starts as its shortcut (timm's ``zero_init_last``)."""
    for block in plan.blocks:
        norms = [unit.norm for unit in block.convs if unit.norm]
        if block.residual and norms:
            nn.init.zeros_(model.get_submodule(f"{block.path}.{norms[-1]}").weight)


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
        elif isinstance(module, LayerScale):
            nn.init.constant_(module.gamma, module.init)
        elif isinstance(module, GlobalResponseNorm):  # starts as the identity (timm, ConvNeXt-V2)
            nn.init.zeros_(module.weight)
            nn.init.zeros_(module.bias)
        elif isinstance(module, nn.Linear):
            bound = 1.0 / math.sqrt(module.out_features)
            nn.init.uniform_(module.weight, -bound, bound, generator=generator)
            nn.init.zeros_(module.bias)
