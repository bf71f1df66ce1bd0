"""Bringing weights in: peers' EfficientNet checkpoints mapped onto archc's keys, 2D weights inflated into
3D, input channels and classes adapted.

For each tensor of the archc model (its state_dict key: ``stages.<s>.<j>.<module>.<leaf>``) we name the tensor
the peer calls it: the module's role maps to the peer's name, and where a peer numbers layers by position
(torchvision), the position is the layer's place in the block's layer list in the Plan. So each tensor on both
sides is used exactly once, and anything left over is reported by name.
"""

from __future__ import annotations

import os
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import ir
from .errors import ArgumentError, CheckpointError, concat_problems, shown
from .files import MAX_READ, check_regular_file
from .formatting import printable
from .kinds.blocks import BLOCKS
from .kinds.decoders import decoder_kind
from .kinds.layers import table
from .kinds.sources import NAMES, SOURCES, named_source

if TYPE_CHECKING:  # torch is imported by the functions that need it, so the CLI starts without it
    import torch

MAX_WEIGHTS_BYTES = MAX_READ  # 500M float32 parameters (api.MAX_PARAMS) and headers

INFLATE_MODES = ("center", "mean")  # see inflate_kernel


def conventions(source: str, block_types: set[str]) -> dict:
    """The spec overrides ``source``'s weights need, for a network of these block types (its record in
    :mod:`archc.kinds.sources`: padding and norm eps, and torchvision's eps 1e-3 for the Fused-MBConv family)."""
    return SOURCES[source].conventions_for(block_types)


def name_conventions(name: str) -> dict:
    """The spec overrides a shipped name brings by itself: a timm tf_ name TF's padding and eps, as timm builds it."""
    named = named_source(name)
    return dict(named.conventions) if named else {}


# archc block role -> the peer's name, for peers that name roles (MONAI and efficientnet-pytorch).
_TF_PORT_ROLES = {
    "conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
    "se.conv_reduce": "_se_reduce", "se.conv_expand": "_se_expand", "conv_pwl": "_project_conv", "bn3": "_bn2",
}
# timm's names of archc's roles, and which layouts carry which block kind, are the kinds' own (archc.kinds.blocks).


@dataclass(frozen=True)
class Imported:
    """Tensors ready for ``load_state_dict`` and what was adapted on the way, for the user to read."""

    state_dict: dict
    notes: tuple[str, ...]


def read_state_dict(weights) -> dict:
    """A state_dict from a mapping, a ``.safetensors`` file, or a torch file (read with ``weights_only=True``,
    which refuses to run code). Checkpoints that wrap it (``{"state_dict": ...}``, ``{"model": ...}``) are unwrapped."""
    import torch

    if isinstance(weights, dict):
        state = weights
    else:
        path = os.fspath(weights)
        check_regular_file(path, CheckpointError, "weights file", MAX_WEIGHTS_BYTES)
        if path.endswith(".safetensors"):  # load_file maps the file: its size, checked above, bounds the tensors
            from safetensors import SafetensorError
            from safetensors.torch import load_file

            try:
                state = load_file(path)
            except (SafetensorError, OSError) as exc:
                raise CheckpointError(f"not a readable safetensors file: {exc}", file=path) from None
        else:
            _check_unpacked_size(path)
            try:
                state = torch.load(path, map_location="cpu", weights_only=True)
            except Exception as exc:  # torch reports refused or corrupt pickles with many types
                raise CheckpointError(f"not a weights file torch can read safely: {str(exc).splitlines()[0]}", file=path) from None
    for key in ("state_dict", "model", "model_state_dict"):
        if isinstance(state, dict) and key in state and isinstance(state[key], dict):
            state = state[key]
    if not isinstance(state, dict) or not all(isinstance(v, torch.Tensor) for v in state.values()):
        raise CheckpointError("expected a mapping of tensor names to tensors (a state_dict)", file=_file(weights))
    problems = [problem for key, value in state.items() for problem in _storage_problems(key, value)]
    if problems:
        raise CheckpointError("not a state_dict archc can import: " + concat_problems(problems, 4), file=_file(weights))
    return {k.removeprefix("module."): v for k, v in state.items()}  # DataParallel / DDP prefixes


def _file(weights) -> str | None:
    return None if isinstance(weights, dict) else os.fspath(weights)


def _storage_problems(key, value: torch.Tensor) -> list[str]:
    """What makes an entry of a state_dict unusable whatever the model: a name that is not text, a tensor
    without values (meta) or not stored as a dense array (sparse, nested)."""
    import torch

    if not isinstance(key, str):
        return [f"the name {shown(key)} is not text"]
    if value.device.type == "meta":
        return [f"{printable(key)} has no values (a meta tensor)"]
    if value.layout != torch.strided:
        return [f"{printable(key)} is {str(value.layout).removeprefix('torch.')}, not a dense tensor"]
    return []


def check_request(source: str, inflate: str) -> None:
    """Refuse an unknown source or inflation whether or not weights are given: a typo is never ignored."""
    if source not in SOURCES:
        raise ArgumentError(f"unknown weights source {shown(source)}; expected one of {', '.join(NAMES)}")
    if inflate not in INFLATE_MODES:
        raise ArgumentError(f"unknown inflation {shown(inflate)}; 2D kernels go into 3D by {' or '.join(map(repr, INFLATE_MODES))}")


def _check_unpacked_size(path: str) -> None:
    """A torch file is a zip: refuse one whose members declare more bytes than a weights file may hold, before
    torch inflates them (a few MB of deflated zeros can declare gigabytes)."""
    if not zipfile.is_zipfile(path):
        return  # the legacy pickle format: its size on disk, checked already, bounds it
    try:
        with zipfile.ZipFile(path) as archive:
            unpacked = sum(member.file_size for member in archive.infolist())
    except (zipfile.BadZipFile, OSError, ValueError) as exc:
        raise CheckpointError(f"not a weights file torch can read safely: {exc}", file=path) from None
    if unpacked > MAX_WEIGHTS_BYTES:
        raise CheckpointError(f"{unpacked:,} bytes unpacked, over the limit of {MAX_WEIGHTS_BYTES:,} for a weights file", file=path)


def peer_names(plan: ir.Plan, keys: list[str], source: str) -> dict[str, str]:
    """archc key -> the same tensor's key in ``source``'s state_dict."""
    if source not in SOURCES:
        raise ArgumentError(f"unknown weights source {source!r}; expected one of {', '.join(NAMES)}")
    record = SOURCES[source]
    if record.keys is None:
        return {key: key for key in keys}
    layout = _layout(source)
    blocks = {block.path: block for block in plan.blocks}
    names = {}
    for key in keys:
        prefix, _, leaf = key.rpartition(".")
        try:
            if prefix.startswith("stages."):
                _, stage, j, role = prefix.split(".", 3)
                block = blocks[f"stages.{stage}.{j}"]
                if record.layout is not None and record.layout not in BLOCKS[block.type].peers:
                    raise CheckpointError(f"{source} weights have no {block.type} blocks ({block.path})")
                role, part = _part(role)
                names[key] = layout(plan, block, role, part + leaf)
            else:
                names[key] = layout(plan, None, prefix, leaf)
        except KeyError:  # a layer the source's networks never have (MONAI's EfficientNet has no deep stem)
            raise CheckpointError(f"{source} weights have no tensor for {key}: its networks have no such layer") from None
    return names


def _layout(source: str):
    """The key-layout function a source's record names (one of the ``*_key`` functions below)."""
    return globals()[SOURCES[source].keys]


def _part(role: str) -> tuple[str, str]:
    """``conv_dw.2`` -> (``conv_dw``, ``2.``): the part of a mixed conv keeps its number in every layout that has one."""
    head, _, tail = role.rpartition(".")
    return (head, tail + ".") if tail.isdigit() else (role, "")


def detect_sources(plan: ir.Plan, keys: list[str], peer_keys) -> tuple[str, ...]:
    """The sources whose key names for this Plan match ``peer_keys`` best (more than one when their names are
    the same, as timm's and timm_tf's are), or none when no source's names cover at least half of the
    smaller of the two key sets. Matching the whole key set, not prefixes, tells MONAI (``_blocks.<stage>.<index>``)
    from efficientnet-pytorch (``_blocks.<index>``), which share every role name; a checkpoint of another
    size of the same family (B3 weights, a B0 Plan) still matches its own source best."""
    peer = set(peer_keys)
    scores = {}
    for source in SOURCES:
        try:
            wanted = set(peer_names(plan, keys, source).values())
        except CheckpointError:  # the source has no such blocks (say, fused MBConv in MONAI)
            continue
        shared = len(wanted & peer)
        if wanted and peer and shared * 2 >= min(len(wanted), len(peer)):
            scores[source] = shared / len(wanted | peer)  # Jaccard: extra and missing keys both count against
    best = max(scores.values(), default=None)
    return tuple(source for source, score in scores.items() if score == best)


def layout_hint(plan: ir.Plan, keys: list[str], peer_keys, source: str) -> str:
    """"these look like <source> weights: use --from <source> ..." when ``peer_keys`` match another known
    layout better than ``source``'s; "" when ``source`` is (one of) the best match or nothing matches."""
    found = detect_sources(plan, keys, peer_keys)
    if not found or source in found:
        return ""
    if len(found) == 1:
        [name] = found
        return f"these look like {name} weights: use --from {name} (weights_from='{name}')"
    if len({SOURCES[name].keys for name in found}) == 1:  # one key layout (timm's own and its TF ports): the conventions differ
        found = sorted(found, key=lambda name: bool(SOURCES[name].hint))  # the plain source first, then those a hint tells apart
        hints = "; ".join(SOURCES[name].hint for name in found if SOURCES[name].hint)
        return (f"these look like {' or '.join(found)} weights (the same names{'; ' + hints if hints else ''}): "
                f"use --from {' or --from '.join(found)} (weights_from={' or '.join(repr(name) for name in found)})")
    return f"these look like {' or '.join(found)} weights: use --from " + " or --from ".join(found)


def block_summary(plan: ir.Plan, peer_keys, source: str) -> list[str]:
    """What the key names tell about a misfit before any single key does: "16 blocks given, 26 expected" and,
    where the layout numbers stages, each stage whose repeats differ ("stage 3 has 4 repeats in the weights,
    5 in the spec"). The blocks are found by the key pattern of the source's model class for this Plan (timm's
    ResNet ``layer1.0.``, RegNet ``s1.b1.``). Empty when the numbers of blocks agree, or the source has no pattern
    for the class."""
    keys = SOURCES[source].block_keys.get(model_class(plan))  # where its layout says which block a tensor belongs to
    if keys is None:
        return []
    found = {where for key in peer_keys if (where := keys.stage_and_block(key))}
    if len(found) == len(plan.blocks):
        return []
    summary = [f"{len(found)} blocks given, {len(plan.blocks)} expected"]
    if not keys.numbers_stages or not found:  # the layout numbers blocks, not stages; or none has a block
        return summary
    given = Counter(stage - keys.first_stage for stage, _ in found)
    stages = []
    for stage in sorted(set(given) | {s.index for s in plan.stages}):
        want = len(plan.stages[stage].blocks) if 0 <= stage < len(plan.stages) else 0
        if given[stage] != want:
            stages.append(f"stage {stage} has {given[stage]} repeats in the weights, {want} in the spec")
    return summary + stages[:4] + ([f"{len(stages) - 4} more stages differ"] if len(stages) > 4 else [])


def model_class(plan: ir.Plan) -> str:
    """The peers' model class (:data:`archc.kinds.sources.MODEL_CLASSES`) that holds this Plan's network, and so names
    its keys: RegNet where lowering says the ``regnet:`` section wrote the stage table (its bottleneck rows alone look
    like a ResNet's), ResNet for basic and bottleneck blocks, ConvNeXt where timm places the blocks itself, else
    EfficientNet's (which MobileNet's share)."""
    if plan.stage_generator == "regnet":
        return "regnet"
    if plan.stages and plan.blocks[0].type in ("basic", "bottleneck"):
        return "resnet"
    if any(BLOCKS[block.type].timm_path for block in plan.blocks):
        return "convnext"
    return "efficientnet"


def _without_head(peer: dict, plan: ir.Plan, source: str) -> tuple[dict, int]:
    """A classifier's weights for an encoder (a Plan without a head): the head's and classifier's tensors
    are left out, and counted. Anything else that does not fit is still an error."""
    if plan.head is not None:
        return peer, 0
    parts = ("head.conv", "head.bn", "classifier")
    if SOURCES[source].keys is None:
        prefixes = parts
    else:
        prefixes = tuple(_layout(source)(plan, None, part, "").rstrip(".") for part in parts)
    kept = {key: value for key, value in peer.items() if key.rpartition(".")[0] not in prefixes}
    return kept, len(peer) - len(kept)


# The key layouts the records of archc.kinds.sources name: (plan, block, role, leaf) -> the source's key of one archc
# tensor; ``block`` None for the stem, head and classifier (``role`` then "stem.conv", "head.bn", "classifier", ...).

def monai_key(plan: ir.Plan, block: ir.Block | None, role: str, leaf: str) -> str:
    """MONAI's EfficientNetBN nests blocks per stage but names each by its global index: ``_blocks.<stage>.<index>.<TF role>``.
    A ResNet-family Plan takes the layout of MONAI's ResNet or SENet instead (:func:`monai_residual_key`)."""
    if model_class(plan) == "resnet":
        return monai_residual_key(plan, block, role, leaf)
    if block is None:
        return _MONAI_NETWORK[role] + "." + leaf
    return f"_blocks.{block.stage}.{block.index}.{_TF_PORT_ROLES[role]}.{leaf}"


def efficientnet_pytorch_key(plan: ir.Plan, block: ir.Block | None, role: str, leaf: str) -> str:
    """efficientnet-pytorch: MONAI's names, its blocks numbered flat: ``_blocks.<index>.<TF role>``."""
    if block is None:
        return _MONAI_NETWORK[role] + "." + leaf
    return f"_blocks.{block.index}.{_TF_PORT_ROLES[role]}.{leaf}"


_MONAI_NETWORK = {"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head", "head.bn": "_bn1", "classifier": "_fc"}


def monai_residual_key(plan: ir.Plan, block: ir.Block | None, role: str, leaf: str) -> str:
    """MONAI's residual networks. MONAI has no ResNet with SE and no SENet without, so the blocks' SE decides the layout:

    - ResNet (monai.networks.nets.resnet, the layout of MedicalNet's checkpoints): stem ``conv1``/``bn1``, blocks
      ``layer<stage + 1>.<j>.<role>`` with archc's role names (conv1, bn1, ..., ``downsample.0``/``.1``), classifier ``fc``;
    - SENet (monai.networks.nets.senet): stem ``layer0.conv1``/``layer0.bn1``, each conv unit of a block a MONAI Convolution
      (``conv1.conv``, its norm ``conv1.adn.N``), the SE ``se_layer.fc.0``/``.fc.2`` (nn.Linear: importing reshapes them into
      1x1 convs), the projection ``project.conv``/``project.adn.N``, classifier ``last_linear``."""
    senet = any(b.se_channels for b in plan.blocks)
    if block is None and not senet:  # a stem layer MONAI's ResNet lacks (a deep stem) is a KeyError: peer_names names the tensor
        return f"{_MONAI_RESNET[role] if role.startswith('stem.') else _MONAI_RESNET.get(role, role)}.{leaf}"
    if block is None:
        if role not in _MONAI_SENET and role.startswith("stem."):  # SENet154's deep stem: layer0.conv1..3 / bn1..3, archc's names
            return f"layer0.{role.removeprefix('stem.')}.{leaf}"
        return f"{_MONAI_SENET.get(role, role)}.{leaf}"
    where = f"layer{block.stage + 1}.{_position(block)}"
    if not senet:
        return f"{where}.{role}.{leaf}"
    if role == ir.SHORTCUT:  # the projection: its conv and norm, numbered as archc's nn.Sequential numbers them
        part, _, leaf = leaf.partition(".")
        names = {name: f"project.{kind}" for unit in block.shortcut if isinstance(unit, ir.ConvUnit)
                 for name, kind in ((unit.conv, "conv"), (unit.norm, "adn.N"))}
        return f"{where}.{names.get(part, f'{ir.SHORTCUT}.{part}')}.{leaf}"
    units = {name: f"{unit.conv}.{kind}" for unit in block.convs for name, kind in ((unit.conv, "conv"), (unit.norm, "adn.N"))}
    return f"{where}.{units[role] if role in units else _MONAI_SE[role]}.{leaf}"  # another attention (ECA): a KeyError, as above


_MONAI_RESNET = {"stem.conv": "conv1", "stem.bn": "bn1", "classifier": "fc"}
_MONAI_SENET = {"stem.conv": "layer0.conv1", "stem.bn": "layer0.bn1", "classifier": "last_linear"}
_MONAI_SE = {"se.conv_reduce": "se_layer.fc.0", "se.conv_expand": "se_layer.fc.2"}


def timm_key(plan: ir.Plan, block: ir.Block | None, role: str, leaf: str) -> str:
    """timm (its own weights and its TF ports), as its model class for the Plan names them (:func:`model_class`):
    EfficientNet's ``blocks.<stage>.<j>.<timm's role>``, ResNet's ``layer<stage + 1>.<j>``, RegNet's ``s<stage + 1>.b<j + 1>``,
    ConvNeXt's ``stages.<stage>.blocks.<j>``."""
    family = model_class(plan)
    if family == "regnet":
        return _timm_regnet_key(block, role, leaf)
    if family == "resnet":
        return _resnet_key(plan, block, {"se.conv_reduce": "se.fc1", "se.conv_expand": "se.fc2"}.get(role, role), leaf)
    if block is None:
        if family == "convnext":  # timm's ConvNeXt class: stem.0/.1, head.norm, head.fc
            return f"{_TIMM_CONVNEXT[role]}.{leaf}"
        # timm's MobileNetV3 class (the efficient head) calls the head's norm norm_head (MobileNetV4 has one)
        head_norm = "norm_head" if plan.head is not None and plan.head.type == "efficient" else "bn2"
        table = {"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head", "head.bn": head_norm, "classifier": "classifier"}
        return f"{table[role]}.{leaf}"
    kind = BLOCKS[block.type]
    where = kind.timm_path(block) if kind.timm_path else f"blocks.{block.stage}.{_position(block)}"
    return ".".join(part for part in (where, kind.timm_roles(block).get(role, role), leaf) if part)


# timm's RegNet class (timm regnet.py): stem.conv/.bn, each unit of a Bottleneck a ConvNormAct (conv1.conv, conv1.bn),
# the SE's fc1/fc2, the projection shortcut downsample.conv/.bn, the classifier head.fc
_TIMM_REGNET = {"stem.conv": "stem.conv", "stem.bn": "stem.bn", "classifier": "head.fc", "se.conv_reduce": "se.fc1", "se.conv_expand": "se.fc2",
                "conv1": "conv1.conv", "bn1": "conv1.bn", "conv2": "conv2.conv", "bn2": "conv2.bn", "conv3": "conv3.conv", "bn3": "conv3.bn"}


def _timm_regnet_key(block: ir.Block | None, role: str, leaf: str) -> str:
    """timm's RegNet: blocks ``s<stage + 1>.b<j + 1>.<role>``, both numbered from 1."""
    if block is None:
        return f"{_TIMM_REGNET.get(role, role)}.{leaf}"
    if role == ir.SHORTCUT:  # archc's downsample.0/.1 (the part is the leaf's first name): timm's downsample.conv/.bn
        part, _, leaf = leaf.partition(".")
        names = {name: timm for unit in block.shortcut if isinstance(unit, ir.ConvUnit) for name, timm in ((unit.conv, "conv"), (unit.norm, "bn"))}
        role = f"{ir.SHORTCUT}.{names[part]}"
    return f"s{block.stage + 1}.b{_position(block) + 1}.{_TIMM_REGNET.get(role, role)}.{leaf}"


# torchvision's RegNet: stem.0/.1, blocks trunk_output.block<s + 1>.block<s + 1>-<j> (ResBottleneckBlock: f.a, f.b, f.se,
# f.c, each conv .0 and norm .1; the projection proj.0/.1), classifier fc.
_TV_REGNET = {"stem.conv": "stem.0", "stem.bn": "stem.1", "classifier": "fc", "se.conv_reduce": "f.se.fc1", "se.conv_expand": "f.se.fc2",
              "conv1": "f.a.0", "bn1": "f.a.1", "conv2": "f.b.0", "bn2": "f.b.1", "conv3": "f.c.0", "bn3": "f.c.1", ir.SHORTCUT: "proj"}


def _torchvision_regnet_key(block: ir.Block | None, role: str, leaf: str) -> str:
    """torchvision's RegNet (its regnet_x_400mf is timm's regnetx_004_tv, and so on): ``trunk_output.block<s>.block<s>-<j>``."""
    if block is None:
        return f"{_TV_REGNET[role]}.{leaf}"
    return f"trunk_output.block{block.stage + 1}.block{block.stage + 1}-{_position(block)}.{_TV_REGNET[role]}.{leaf}"


_TIMM_CONVNEXT = {"stem.conv": "stem.0", "stem.bn": "stem.1", "head.norm": "head.norm", "classifier": "head.fc"}


def torchvision_key(plan: ir.Plan, block: ir.Block | None, role: str, leaf: str) -> str:
    """torchvision: ``features.<stage + 1>.<j>.block.<position in the layer list>.<0 conv | 1 norm>``, the SE as
    ``block.<position>.fc1`` / ``fc2``; ``features.0`` the stem, the head the entry after the last stage. A ResNet:
    ``layer<stage + 1>.<j>.<role>`` as timm's."""
    family = model_class(plan)
    if family == "regnet":
        return _torchvision_regnet_key(block, role, leaf)
    if family == "resnet":
        return _resnet_key(plan, block, role, leaf)
    if family == "convnext":
        return _torchvision_convnext_key(block, role, leaf)
    if block is None:
        head_index = len(plan.stages) + 1  # features.0 is the stem, then one entry per stage
        table = {"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.conv": f"features.{head_index}.0",
                 "head.bn": f"features.{head_index}.1", "classifier": "classifier.1"}
        return f"{table[role]}.{leaf}"
    stage, j = block.stage, _position(block)
    positions = {layer.name: i for i, layer in enumerate(block.layers)}
    positions.update({unit.norm: positions[unit.conv] for unit in block.convs if unit.norm})
    if role.startswith("se."):
        return f"features.{stage + 1}.{j}.block.{positions['se']}.{'fc1' if role == 'se.conv_reduce' else 'fc2'}.{leaf}"
    part = 1 if role in {unit.norm for unit in block.convs} else 0
    return f"features.{stage + 1}.{j}.block.{positions[role]}.{part}.{leaf}"


# torchvision's ConvNeXt: features.0 the stem (conv, LayerNorm2d), then per stage its downsample (LayerNorm2d, conv) and
# its blocks (CNBlock: block.0 depthwise conv, .2 LayerNorm, .3 and .5 nn.Linear, and a layer_scale of shape (C, 1, 1)).
_TV_CONVNEXT_NETWORK = {"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.norm": "classifier.0", "classifier": "classifier.2"}
_TV_CONVNEXT_ROLES = {"conv_dw": "block.0", "norm": "block.2", "fc1": "block.3", "fc2": "block.5"}
_TV_CONVNEXT_DOWNSAMPLE = {"norm": "0", "conv": "1"}


def _torchvision_convnext_key(block: ir.Block | None, role: str, leaf: str) -> str:
    """``features.<2s + 1>.<j>`` for stage s's blocks, ``features.<2s>`` for the downsample opening stage s >= 1 (archc's
    ``stages.<s>.0``); the downsample's norm is ``.0``, its conv ``.1``; the layer scale a tensor of its own."""
    if block is None:
        return f"{_TV_CONVNEXT_NETWORK[role]}.{leaf}"
    j = _position(block)
    if block.type == "downsample":
        return f"features.{2 * block.stage}.{_TV_CONVNEXT_DOWNSAMPLE[role]}.{leaf}"
    where = f"features.{2 * block.stage + 1}.{j - 1 if block.stage else j}"
    return f"{where}.layer_scale" if role == "layer_scale" else f"{where}.{_TV_CONVNEXT_ROLES[role]}.{leaf}"


# timm's deep stem (ResNet-D/-T): conv1 = Sequential(conv 0, bn 1, act 2, conv 3, bn 4, act 5, conv 6), then bn1
_DEEP_STEM = {"stem.conv1": "conv1.0", "stem.bn1": "conv1.1", "stem.conv2": "conv1.3", "stem.bn2": "conv1.4", "stem.conv3": "conv1.6", "stem.bn3": "bn1"}
_RESNET = {"stem.conv": "conv1", "stem.bn": "bn1", "classifier": "fc", **_DEEP_STEM}


def _resnet_key(plan: ir.Plan, block: ir.Block | None, role: str, leaf: str) -> str:
    """timm's and torchvision's ResNet: stem ``conv1``/``bn1``, blocks ``layer<stage + 1>.<j>.<role>`` (archc's role names
    are theirs: conv1, bn1, ..., downsample.0), classifier ``fc``."""
    if block is None:
        return f"{_RESNET.get(role, role)}.{leaf}"
    return f"layer{block.stage + 1}.{_position(block)}.{role}.{leaf}"


def _position(block: ir.Block) -> int:
    """A block's place in its stage: the last part of its path (``stages.3.1`` -> 1)."""
    return int(block.path.rpartition(".")[2])



def convention_differences(trained: ir.Plan, target: ir.Plan) -> list[str]:
    """What ``target`` computes differently from the Plan the weights were ``trained`` in, with the same
    tensors: activations, SE gates and placement, the norm. Shapes, dims, input channels and classes may
    differ (importing adapts them); these may not, or the outputs change with no error."""
    differences = []
    if trained.norm.type != target.norm.type:
        differences.append(f"norm.type: the weights have {trained.norm.type}, this spec {target.norm.type}")
    pairs = [(f"stem.{was.act}", was.activation, now.activation) for was, now in zip(trained.stem.units, target.stem.units) if was.act or now.act]
    if trained.head is not None and target.head is not None and trained.head.conv and target.head.conv:
        pairs.append(("head.act", trained.head.conv.activation, target.head.conv.activation))
    blocks = {block.path: block for block in target.blocks}
    for old in trained.blocks:
        new = blocks.get(old.path)
        if new is None:
            continue
        order = [layer.name for layer in old.layers], [layer.name for layer in new.layers]
        if order[0] != order[1]:
            pairs.append((f"{old.path} layers", " -> ".join(order[0]), " -> ".join(order[1])))
            continue
        pairs.append((f"{old.path}.act_after", old.activation_after, new.activation_after))
        for was, now in zip(old.layers + old.shortcut, new.layers + new.shortcut):
            pairs += [(f"{old.path}.{what}", have, want) for (what, have), (_, want) in zip(_COMPUTES[type(was)](was), _COMPUTES[type(now)](now))]
    differences += [f"{what}: the weights have {have}, this spec {want}" for what, have, want in pairs if have != want]
    return differences


# What each layer kind computes that its weights do not hold: (module, value) pairs that must agree between the Plan
# the weights were trained in and the one they go into.
_COMPUTES = table("weights", {
    ir.ConvUnit: lambda unit: [(unit.act, unit.activation)] if unit.act else [],
    ir.SqueezeExcite: lambda se: [(f"{se.name}.act", se.activation), (f"{se.name}.gate", se.gate)],
    ir.ECA: lambda eca: [(f"{eca.name}.gate", eca.gate)],
    ir.LayerScale: lambda scale: [],
    ir.NormLayer: lambda norm: [],
    ir.GRN: lambda grn: [(f"{grn.name}.eps", grn.eps)],
    ir.Pool: lambda pool: [(pool.name, (pool.kind, pool.kernel, pool.stride, pool.padding, pool.ceil_mode, pool.count_include_pad))],
    ir.ChannelPad: lambda pad: [],
})


def import_weights(peer: dict, model: torch.nn.Module, source: str, inflate: str = "center") -> Imported:
    """Map ``peer`` (a state_dict of ``source``) onto ``model``'s keys, adapting what can be adapted:
    2D kernels inflated into 3D (``inflate``: see :func:`inflate_kernel`), the stem's input channels, a classifier
    of another size."""
    target = model.state_dict()
    fresh = _fresh_decoder(target, peer, source)
    names = peer_names(model.plan, [key for key in target if key not in fresh], source)
    peer, dropped = _without_head(peer, model.plan, source)
    wanted = set(names.values())
    unexpected = [f"{printable(k)} {list(v.shape)}" for k, v in peer.items() if k not in wanted]
    absent = [k for k in names if names[k] not in peer]
    # Weights with no classifier at all, and everything else in place (a backbone: MedicalNet's checkpoints, a timm model
    # saved with num_classes=0): the classifier is new, as one of another size is re-initialised. One held in part is not.
    new_classifier = set(absent) if not unexpected and absent and model.plan.head and all(k.startswith("classifier.") for k in absent) \
        and len(absent) == sum(k.startswith("classifier.") for k in target) else set()
    fresh |= new_classifier
    missing = [f"{names[k]} {list(target[k].shape)}" for k in absent if k not in new_classifier]
    problems = [f"missing {m}" for m in missing] + [f"unexpected {u}" for u in unexpected]
    if problems:
        hint = layout_hint(model.plan, list(target), peer, source)
        summary = "; ".join([*block_summary(model.plan, peer, source), f"{len(missing)} tensors missing, {len(unexpected)} unexpected"])
        raise CheckpointError(f"{source} weights do not fit this model ({summary}): " + concat_problems(problems) + (f". {hint}" if hint else ""))

    state, notes, inflated = {}, ([f"left out the weights' head and classifier ({dropped} tensors): {_headless(model.plan)} has none"] if dropped else []), 0
    by_mean = 0  # even kernels, mean-inflated whatever ``inflate`` says
    if fresh - new_classifier:
        notes.append(f"initialised the decoder ({len(fresh - new_classifier)} tensors) as a new model's: the weights have none")
    if new_classifier:
        notes.append(f"initialised the classifier for {model.plan.head.num_classes} classes as a new model's: the weights have none (a backbone's)")
    bad = []  # tensors whose values cannot be weights: all of them are named in one error
    for key, value in target.items():
        if key in fresh:
            state[key] = value
            continue
        given = tensor = peer[names[key]]
        if not _importable_dtype(given.dtype, value.dtype):
            bad.append(f"{printable(names[key])} has dtype {str(given.dtype).removeprefix('torch.')}, {_DTYPE_RULE[value.dtype.is_floating_point]}")
            continue
        if tensor.shape != value.shape and (tensor.ndim == 2 or value.ndim == 1) and _unit_dims_apart(tensor.shape, value.shape):
            # the same numbers in the same order: an nn.Linear's weight for a 1x1 conv (timm's and torchvision's ConvNeXt MLPs),
            # torchvision's (C, 1, 1) layer scale for archc's (C,)
            tensor = tensor.reshape(value.shape)
        if tensor.shape != value.shape:
            if _is_2d_kernel_for_3d(key, tensor, value):
                # an even kernel (a patchify conv) has no centre slice: its depth is filled with the mean
                mode = "mean" if value.shape[2] % 2 == 0 else inflate
                tensor, inflated = inflate_kernel(tensor, value.shape[2], mode), inflated + 1
                by_mean += mode != inflate
            if tensor.shape != value.shape:
                tensor, note = _adapt(key, names[key], tensor, value)
                notes.append(note)
        if tensor is not value:  # imported, not re-initialised
            bad += _value_problems(key, names[key], given)
            state[key] = tensor.to(value.dtype)
        else:
            state[key] = value
    if bad:
        raise CheckpointError(f"{source} weights cannot be imported: " + concat_problems(bad, 4))
    if inflated:  # one note for all of them
        even = f"; the {by_mean} even ones, which have no middle slice, by mean" if by_mean else ""
        notes.append(f"inflated {inflated} kernels from 2D to 3D ({inflate}{even})")
    return Imported(state, tuple(notes))


# The dtypes trained weights are stored in, cast to the model's on import (float16 and bfloat16 exactly, float64
# rounded to nearest). Integers, booleans and complex numbers are no weights of a float model, and the float8
# formats hold quantised values whose scales live elsewhere, so casting any of them gives other numbers in silence.
WEIGHT_DTYPES = ("float16", "bfloat16", "float32", "float64")
_DTYPE_RULE = {True: f"expected a floating dtype ({', '.join(WEIGHT_DTYPES)})", False: "expected an integer dtype"}


def _importable_dtype(given: torch.dtype, wanted: torch.dtype) -> bool:
    """Floating weights for a floating tensor; integers (not booleans) for an integer buffer (a norm's batch count)."""
    import torch

    if wanted.is_floating_point:
        return str(given).removeprefix("torch.") in WEIGHT_DTYPES
    return not (given.is_floating_point or given.is_complex or given == torch.bool)


def _value_problems(key: str, peer_key: str, tensor: torch.Tensor) -> list[str]:
    """Values no trained network holds: NaN or infinity in a weight (every output would be NaN), a negative
    running variance (the norm takes its square root)."""
    import torch

    if not tensor.is_floating_point():
        return []
    problems = []
    nonfinite = tensor.numel() - int(torch.isfinite(tensor).sum())
    if nonfinite:
        problems.append(f"{printable(peer_key)} has {nonfinite:,} non-finite values (NaN or infinity)")
    if key.endswith("running_var") and (negative := int((tensor < 0).sum())):
        problems.append(f"{printable(peer_key)} has {negative:,} negative values, and a running variance cannot be negative")
    return problems


def _headless(plan: ir.Plan) -> str:
    return decoder_kind(plan.decoder.type).title if plan.decoder is not None else "an encoder"


def _fresh_decoder(target: dict, peer: dict, source: str) -> set[str]:
    """The decoder's keys that keep their initial values: all of them, unless the weights are an archc network's
    with a decoder, which hold it too (then every key is imported, and a missing one is an error; each decoder
    kind's ``weights_note`` says so)."""
    keys = {key for key in target if key.startswith("decoder.")}
    if source == "archc" and any(key in peer for key in keys):
        return set()
    return keys


def _unit_dims_apart(a: torch.Size, b: torch.Size) -> bool:
    """Shapes that differ only by dimensions of size 1: a reshape keeps every number and its order."""
    return [n for n in a if n != 1] == [n for n in b if n != 1]


def _is_2d_kernel_for_3d(key: str, tensor: torch.Tensor, like: torch.Tensor) -> bool:
    return tensor.ndim == like.ndim - 1 and like.ndim >= 3 and key.endswith("weight")


def _adapt(key: str, peer_key: str, tensor: torch.Tensor, like: torch.Tensor) -> tuple[torch.Tensor, str]:
    """The stem's input channels or a classifier of another size, and the note saying so."""
    if key == "stem.conv.weight" and tensor.ndim == like.ndim and tensor.shape[0] == like.shape[0] and tensor.shape[2:] == like.shape[2:] \
            and tensor.shape[1] > 0:  # a stem with no input channels has nothing to adapt from
        return adapt_input_channels(tensor, like.shape[1]), f"adapted the stem from {tensor.shape[1]} to {like.shape[1]} input channels"
    if key.startswith("classifier.") and tensor.ndim == like.ndim:
        return like, f"re-initialised {key} for {like.shape[0]} classes (the weights have {tensor.shape[0]})"
    raise CheckpointError(f"{printable(peer_key)} has shape {list(tensor.shape)}, the model needs {list(like.shape)} for {key}")


def inflate_kernel(weight: torch.Tensor, depth: int, mode: str) -> torch.Tensor:
    """(out, in, kh, kw) -> (out, in, depth, kh, kw). ``center``: the 2D kernel in the middle slice, zeros
    elsewhere, so a volume constant along depth gives the 2D response. ``mean``: repeated and divided by the
    depth (Carreira & Zisserman 2017, I3D), the same response inside a constant volume."""
    if mode == "center":
        out = weight.new_zeros(weight.shape[:2] + (depth,) + weight.shape[2:])
        out[:, :, depth // 2] = weight
        return out
    if mode == "mean":
        return weight.unsqueeze(2).repeat(1, 1, depth, *([1] * (weight.ndim - 2))) / depth
    raise ArgumentError(f"unknown inflation {mode!r}; expected 'center' or 'mean'")


def adapt_input_channels(weight: torch.Tensor, channels: int) -> torch.Tensor:
    """The stem kernel for another number of input channels: summed for one channel (a grey image sees the
    sum of what RGB would), else the pretrained channels repeated cyclically and rescaled so the response to
    an input of equal channels is kept (timm ``adapt_input_conv``)."""
    have = weight.shape[1]
    if channels == 1:
        return weight.sum(dim=1, keepdim=True)
    repeats = -(-channels // have)
    return weight.repeat(1, repeats, *([1] * (weight.ndim - 2)))[:, :channels] * (have / channels)
