"""Weights sources: one :class:`WeightsSource` record per peer whose checkpoints archc imports.

A record says everything archc knows of a source: the name ``--from`` and ``weights_from`` take, its key layout (the
function of :mod:`archc.weights` that names each archc tensor as the source does, and the pattern of its block
keys in each peer model class it has), the conventions its weights were trained with (padding, norm eps: applied as spec overrides), and its
peer layout (a block kind's record lists the layouts that carry it). ``weights.check_request``, ``weights.peer_names``/``conventions``/
``name_conventions``, the API's import and the CLI's ``--from`` choices all read :data:`SOURCES`.

Adding a source is one record here, plus its key-layout function in :mod:`archc.weights` (say ``keras_key``,
named by ``keys="keras_key"``) when no existing layout fits. The registry checks itself at import: a duplicate
name, a malformed pattern or an override of something other than a spec path fails there, with the name.

Nothing here imports torch or the spec: the key-layout functions are named, and looked up when weights are imported.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Mapping

from ..errors import ArchcError
from .blocks import BLOCKS, PEER_LAYOUTS

# The spec paths a source's conventions may set: the two a peer's training fixed, and nothing the user must choose.
CONVENTION_PATHS = ("padding", "norm.eps")


# The peers' model classes whose key layouts archc names (weights.model_class says which one holds a Plan's network):
# each numbers its blocks its own way (timm: EfficientNet's blocks.0.0, ResNet's layer1.0, RegNet's s1.b1, ConvNeXt's
# stages.0.blocks.0).
MODEL_CLASSES = ("efficientnet", "resnet", "regnet", "convnext")


@dataclass(frozen=True)
class BlockKeys:
    """Where a model class's keys say which block a tensor belongs to: a pattern matched at a key's start whose groups
    are (stage, block in the stage), or one group where the class numbers blocks globally (efficientnet-pytorch). A
    group may hold a name rather than a number (ConvNeXt's ``stages.1.downsample``, a block of its own in archc)."""

    pattern: str
    first_stage: int = 0  # the class's number of archc's stage 0 (torchvision's features.0 is the stem; ResNet's layer1)

    def stage_and_block(self, key: str) -> tuple[int | str, ...] | None:
        """(stage, block) of a block's tensor, (global index,) where the class numbers blocks only; None for any other key."""
        match = re.match(self.pattern, key)
        return tuple(int(n) if n.isdigit() else n for n in match.groups()) if match else None

    @property
    def numbers_stages(self) -> bool:
        return re.compile(self.pattern).groups == 2


@dataclass(frozen=True)
class WeightsSource:
    name: str  # what --from and weights_from take
    # The function of archc.weights that gives the source's name of an archc tensor: (plan, block | None, role, leaf)
    # -> key, block None for the stem, head and classifier. None: archc's own keys.
    keys: str | None
    # Model class (MODEL_CLASSES) -> where the keys of the source's checkpoints of it name blocks, for the misfit
    # summary ("stage 2 has 3 repeats in the weights, 4 in the spec"). A class left out: no summary for it.
    block_keys: Mapping[str, BlockKeys]
    # Spec overrides the weights were trained with (CONVENTION_PATHS): importing applies them, so archc computes what
    # the source computes; the user's own overrides win.
    conventions: Mapping[str, object] = field(default_factory=dict)
    # The peer layout of its blocks (archc.kinds.blocks.PEER_LAYOUTS): a block kind whose record lists it among its
    # ``peers`` is one the source's checkpoints hold. None: any kind (archc's own).
    layout: str | None = None
    # A shipped name starting with this (timm's tf_<name>) is built with this source's conventions, whatever weights.
    name_prefix: str | None = None
    # Told after the name where another source has the same key names ("timm_tf for tf_efficientnet_* weights").
    hint: str = ""

    def conventions_for(self, block_kinds: set[str]) -> dict:
        """The spec overrides this source's weights need, for a network of these block kinds: the source's own, and
        what a kind's record adds for this source (torchvision's eps for the Fused-MBConv family)."""
        found = dict(self.conventions)
        for kind in sorted(block_kinds):
            found.update(BLOCKS[kind].conventions.get(self.name, {}))
        return found


# TF-ported weights expect TF "same" padding and batch-norm eps 1e-3; torchvision's and timm's own weights
# symmetric padding and 1e-5.
_TF = MappingProxyType({"padding": "same", "norm.eps": 1e-3})
_TORCH = MappingProxyType({"padding": "symmetric", "norm.eps": 1e-5})

# timm's model classes: EfficientNet's (MobileNets' too) blocks.<stage>.<j>; ResNet's layer<stage + 1>.<j>; RegNet's
# s<stage + 1>.b<j + 1>; ConvNeXt's stages.<i>.blocks.<j>, a stage's downsample a block of its own (archc's too).
_TIMM_BLOCKS = MappingProxyType({
    "efficientnet": BlockKeys(r"blocks\.(\d+)\.(\d+)\."), "resnet": BlockKeys(r"layer(\d+)\.(\d+)\.", first_stage=1),
    "regnet": BlockKeys(r"s(\d+)\.b(\d+)\.", first_stage=1), "convnext": BlockKeys(r"stages\.(\d+)\.(blocks\.\d+|downsample)\."),
})

_RECORDS = (
    WeightsSource("archc", keys=None, block_keys={name: BlockKeys(r"stages\.(\d+)\.(\d+)\.") for name in MODEL_CLASSES}),
    # MONAI's EfficientNetBN nests blocks per stage but names each by its global index; the TF conventions are its ported
    # weights'. MONAI's ResNet (MedicalNet's layout) and SENet are other layouts of the same source: weights.monai_key picks
    # one by the Plan's blocks, and their block kinds' records bring torch's conventions instead. Both name blocks as timm's ResNet.
    WeightsSource("monai", keys="monai_key", conventions=_TF, layout="monai",
                  block_keys={"efficientnet": BlockKeys(r"_blocks\.(\d+)\.(\d+)\."), "resnet": _TIMM_BLOCKS["resnet"]}),
    # efficientnet-pytorch: MONAI's EfficientNet names, its blocks numbered flat.
    WeightsSource("efficientnet_pytorch", keys="efficientnet_pytorch_key", block_keys={"efficientnet": BlockKeys(r"_blocks\.(\d+)\.")},
                  conventions=_TF, layout="efficientnet_pytorch"),
    # timm names its ports of TF's weights tf_<name> and builds every one with TF's conventions, whatever weights it is
    # given (timm efficientnet.py and mobilenetv3.py: each tf_ constructor sets bn_eps=BN_EPS_TF_DEFAULT, pad_type='same').
    WeightsSource("timm_tf", keys="timm_key", block_keys=_TIMM_BLOCKS, conventions=_TF, layout="timm", name_prefix="tf_",
                  hint="timm_tf for tf_efficientnet_* weights"),
    # torchvision builds EfficientNetV2 (the Fused-MBConv family) with batch-norm eps 1e-3 (the fused_mbconv record says
    # so), EfficientNet with torch's 1e-5. Its ResNet names blocks as timm's.
    WeightsSource("torchvision", keys="torchvision_key", conventions=_TORCH, layout="torchvision",
                  block_keys={"efficientnet": BlockKeys(r"features\.(\d+)\.(\d+)\.block\.", first_stage=1), "resnet": _TIMM_BLOCKS["resnet"],
                              "regnet": BlockKeys(r"trunk_output\.block(\d+)\.block\d+-(\d+)\.", first_stage=1)}),
    WeightsSource("timm", keys="timm_key", block_keys=_TIMM_BLOCKS, conventions=_TORCH, layout="timm"),
)


def registry(records: tuple[WeightsSource, ...]) -> dict[str, WeightsSource]:
    """name -> record, in the order above (the order errors and ``--from`` list them), checked once at import."""
    found: dict[str, WeightsSource] = {}
    for source in records:
        problem = (
            "a duplicate name" if source.name in found
            else f"a key-layout function named {source.keys!r}, not an identifier" if source.keys is not None and not source.keys.isidentifier()
            else f"block keys for {', '.join(sorted(unknown))}, not one of {', '.join(MODEL_CLASSES)}"
            if (unknown := set(source.block_keys) - set(MODEL_CLASSES))
            else f"a block-key pattern with {groups} groups, not 1 or 2"
            if (groups := next((n for keys in source.block_keys.values() if (n := re.compile(keys.pattern).groups) not in (1, 2)), None)) is not None
            else f"a layout {source.layout!r}, not one of {', '.join(PEER_LAYOUTS)}" if source.layout is not None and source.layout not in PEER_LAYOUTS
            else "conventions for " + ", ".join(sorted(bad)) + f", not one of {', '.join(CONVENTION_PATHS)}"
            if (bad := set(source.conventions) - set(CONVENTION_PATHS))
            else None
        )
        if problem:
            raise ArchcError(f"weights source {source.name!r}: {problem}")
        found[source.name] = source
    return found


SOURCES: Mapping[str, WeightsSource] = MappingProxyType(registry(_RECORDS))
NAMES = tuple(SOURCES)  # what --from and weights_from accept, in the order errors list them


def source(name: str) -> WeightsSource:
    """The record of a known source (callers check the name first with ``weights.check_request``)."""
    return SOURCES[name]


def named_source(name: str) -> WeightsSource | None:
    """The source whose conventions a shipped name brings by itself (a timm tf_ name: timm_tf's), or None."""
    return next((s for s in SOURCES.values() if s.name_prefix and name.startswith(s.name_prefix)), None)
