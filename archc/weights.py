"""Bringing weights in: peers' EfficientNet checkpoints mapped onto archc's keys, 2D weights inflated into
3D, input channels and classes adapted.

For each tensor of the archc model (its state_dict key: ``stages.<s>.<j>.<module>.<leaf>``) we name the tensor
the peer calls it: the module's role maps to the peer's name, and where a peer numbers layers by position
(torchvision), the position is the layer's place in the block's layer list in the Plan. So each tensor on both
sides is used exactly once, and anything left over is reported by name.
"""

from __future__ import annotations

import os
import re
import zipfile
from collections import Counter
from dataclasses import dataclass
from typing import TYPE_CHECKING

from . import ir
from .errors import ArgumentError, CheckpointError, concat_problems, shown
from .files import MAX_READ, check_regular_file
from .formatting import printable

if TYPE_CHECKING:  # torch is imported by the functions that need it, so the CLI starts without it
    import torch

MAX_WEIGHTS_BYTES = MAX_READ  # 500M float32 parameters (api.MAX_PARAMS) and headers

# The conventions each peer's weights were trained with. Importing applies them as spec overrides (the
# user's own overrides win), so the archc model computes what the peer computes: TF-ported weights expect
# TF "same" padding and batch-norm eps 1e-3; torchvision and timm's own weights symmetric padding and 1e-5.
CONVENTIONS = {
    "archc": {},
    "monai": {"padding": "same", "norm.eps": 1e-3},
    "efficientnet_pytorch": {"padding": "same", "norm.eps": 1e-3},
    "timm_tf": {"padding": "same", "norm.eps": 1e-3},
    "torchvision": {"padding": "symmetric", "norm.eps": 1e-5},
    "timm": {"padding": "symmetric", "norm.eps": 1e-5},
}
SOURCES = tuple(CONVENTIONS)  # the weight sources: one list, the keys above
INFLATE_MODES = ("center", "mean")  # see inflate_kernel


def conventions(source: str, block_types: set[str]) -> dict:
    """The spec overrides ``source``'s weights need, for a network of these block types. torchvision builds
    EfficientNetV2 (the Fused-MBConv family) with batch-norm eps 1e-3 and EfficientNet with torch's 1e-5."""
    found = dict(CONVENTIONS[source])
    if source == "torchvision" and "fused_mbconv" in block_types:
        found["norm.eps"] = 1e-3
    return found


# timm names its ports of TF's weights tf_<name> and builds every one with TF's conventions, whatever weights it is
# given (timm efficientnet.py and mobilenetv3.py: each tf_ constructor sets bn_eps=BN_EPS_TF_DEFAULT, pad_type='same').
TF_PORT_PREFIX = "tf_"


def name_conventions(name: str) -> dict:
    """The spec overrides a shipped name brings by itself: a timm tf_ name TF's padding and eps, as timm builds it."""
    return dict(CONVENTIONS["timm_tf"]) if name.startswith(TF_PORT_PREFIX) else {}


# archc block role -> the peer's name, for peers that name roles (MONAI and efficientnet-pytorch).
_TF_PORT_ROLES = {
    "conv_pw": "_expand_conv", "bn1": "_bn0", "conv_dw": "_depthwise_conv", "bn2": "_bn1",
    "se.conv_reduce": "_se_reduce", "se.conv_expand": "_se_expand", "conv_pwl": "_project_conv", "bn3": "_bn2",
}
# timm's names of archc's roles, per kind of timm block; a role not listed keeps its name (InvertedResidual and
# EdgeResidual use archc's names: conv_pw, bn1, conv_dw, bn2, se, conv_pwl, bn3 / conv_exp, bn1, conv_pwl, bn2).
_TIMM_ROLES = {
    # DepthwiseSeparableConv (ds, dsa, and mbconv at expand 1) numbers its layers differently from InvertedResidual.
    "separable": {"bn2": "bn1", "conv_pwl": "conv_pw", "bn3": "bn2"},
    # ConvBnAct (conv, and fused_mbconv at expand 1: a single kxk conv).
    "conv": {"conv_exp": "conv", "bn": "bn1"},
    # UniversalInvertedResidual (MobileNetV4): each unit a ConvNormAct with conv and bn.
    "uib": {"conv_dw_start": "dw_start.conv", "bn_dw_start": "dw_start.bn", "conv_pw": "pw_exp.conv", "bn1": "pw_exp.bn",
            "conv_dw": "dw_mid.conv", "bn2": "dw_mid.bn", "conv_pwl": "pw_proj.conv", "bn3": "pw_proj.bn"},
}
_TIMM_KINDS = {"ds": "separable", "dsa": "separable", "conv": "conv", "uib": "uib"}


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
        raise ArgumentError(f"unknown weights source {shown(source)}; expected one of {', '.join(SOURCES)}")
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
        raise ArgumentError(f"unknown weights source {source!r}; expected one of {', '.join(SOURCES)}")
    if source == "archc":
        return {key: key for key in keys}
    blocks = {block.path: block for block in plan.blocks}
    global_index = {block.path: block.index for block in plan.blocks}
    names = {}
    for key in keys:
        prefix, _, leaf = key.rpartition(".")
        if prefix.startswith("stages."):
            _, stage, j, role = prefix.split(".", 3)
            path = f"stages.{stage}.{j}"
            role, part = _part(role)
            names[key] = _block_name(source, blocks[path], role, int(stage), int(j), global_index[path], part + leaf)
        else:
            names[key] = _network_name(source, prefix, leaf, plan)
    return names


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
    if set(found) == {"timm", "timm_tf"}:
        return ("these look like timm or timm_tf weights (the same names; timm_tf for tf_efficientnet_* weights): "
                "use --from timm or --from timm_tf (weights_from='timm' or 'timm_tf')")
    return f"these look like {' or '.join(found)} weights: use --from " + " or --from ".join(found)


# Where each layout says which block a tensor belongs to: (stage, block in the stage), or for MONAI (stage,
# global index), or for efficientnet-pytorch the global index alone.
_BLOCK_KEYS = {
    "archc": r"stages\.(\d+)\.(\d+)\.", "timm": r"blocks\.(\d+)\.(\d+)\.", "timm_tf": r"blocks\.(\d+)\.(\d+)\.",
    "torchvision": r"features\.(\d+)\.(\d+)\.block\.", "monai": r"_blocks\.(\d+)\.(\d+)\.", "efficientnet_pytorch": r"_blocks\.(\d+)\.",
}


def block_summary(plan: ir.Plan, peer_keys, source: str) -> list[str]:
    """What the key names tell about a misfit before any single key does: "16 blocks given, 26 expected" and,
    where the layout numbers stages, each stage whose repeats differ ("stage 3 has 4 repeats in the weights,
    5 in the spec"). Empty when the numbers of blocks agree."""
    pattern = re.compile(_BLOCK_KEYS[source])
    found = {tuple(int(n) for n in match.groups()) for key in peer_keys if (match := pattern.match(key))}
    if len(found) == len(plan.blocks):
        return []
    summary = [f"{len(found)} blocks given, {len(plan.blocks)} expected"]
    if source == "efficientnet_pytorch" or not found:  # the layout numbers blocks, not stages; or none has a block
        return summary
    first = 1 if source == "torchvision" else 0  # torchvision's features.0 is the stem
    given = Counter(stage - first for stage, _ in found)
    stages = []
    for stage in sorted(set(given) | {s.index for s in plan.stages}):
        want = len(plan.stages[stage].blocks) if 0 <= stage < len(plan.stages) else 0
        if given[stage] != want:
            stages.append(f"stage {stage} has {given[stage]} repeats in the weights, {want} in the spec")
    return summary + stages[:4] + ([f"{len(stages) - 4} more stages differ"] if len(stages) > 4 else [])


def _without_head(peer: dict, plan: ir.Plan, source: str) -> tuple[dict, int]:
    """A classifier's weights for an encoder (a Plan without a head): the head's and classifier's tensors
    are left out, and counted. Anything else that does not fit is still an error."""
    if plan.head is not None:
        return peer, 0
    parts = ("head.conv", "head.bn", "classifier")
    if source == "archc":
        prefixes = parts
    else:
        prefixes = tuple(_network_name(source, part, "", plan).rstrip(".") for part in parts)
    kept = {key: value for key, value in peer.items() if key.rpartition(".")[0] not in prefixes}
    return kept, len(peer) - len(kept)


def _network_name(source: str, prefix: str, leaf: str, plan: ir.Plan) -> str:
    head_index = len(plan.stages) + 1  # torchvision: features.0 is the stem, then one entry per stage
    # timm's MobileNetV3 class (the efficient head) calls the head's norm norm_head (MobileNetV4 has one)
    head_norm = "norm_head" if plan.head is not None and plan.head.type == "efficient" else "bn2"
    table = {
        "monai": {"stem.conv": "_conv_stem", "stem.bn": "_bn0", "head.conv": "_conv_head", "head.bn": "_bn1", "classifier": "_fc"},
        "torchvision": {"stem.conv": "features.0.0", "stem.bn": "features.0.1", "head.conv": f"features.{head_index}.0",
                        "head.bn": f"features.{head_index}.1", "classifier": "classifier.1"},
        "timm": {"stem.conv": "conv_stem", "stem.bn": "bn1", "head.conv": "conv_head", "head.bn": head_norm, "classifier": "classifier"},
    }[_family(source)]
    return f"{table[prefix]}.{leaf}"


def _block_name(source: str, block: ir.Block, role: str, stage: int, j: int, index: int, leaf: str) -> str:
    family = _family(source)
    if block.type != "mbconv" and family != "timm" and not (family == "torchvision" and block.type in ("fused_mbconv", "conv")):
        raise CheckpointError(f"{source} weights have no {block.type} blocks ({block.path})")
    if family == "monai":
        # MONAI nests blocks per stage but names each by its global index; efficientnet-pytorch is flat.
        where = f"_blocks.{stage}.{index}" if source == "monai" else f"_blocks.{index}"
        return f"{where}.{_TF_PORT_ROLES[role]}.{leaf}"
    if family == "timm":
        return f"blocks.{stage}.{j}.{_TIMM_ROLES.get(_timm_kind(block), {}).get(role, role)}.{leaf}"
    # torchvision: block.<position in the layer list>.<0 conv | 1 norm>, the SE as block.<position>.fc1 / fc2.
    positions = {(layer.conv if isinstance(layer, ir.ConvUnit) else layer.name): i for i, layer in enumerate(block.layers)}
    positions.update({unit.norm: positions[unit.conv] for unit in block.convs if unit.norm})
    if role.startswith("se."):
        return f"features.{stage + 1}.{j}.block.{positions['se']}.{'fc1' if role == 'se.conv_reduce' else 'fc2'}.{leaf}"
    part = 1 if role in {unit.norm for unit in block.convs} else 0
    return f"features.{stage + 1}.{j}.block.{positions[role]}.{part}.{leaf}"


def _timm_kind(block: ir.Block) -> str | None:
    """Which of timm's block classes ``block`` is, where its names differ from archc's."""
    convs = {unit.conv for unit in block.convs}
    if block.type == "mbconv" and "conv_pw" not in convs:
        return "separable"  # timm builds EfficientNet's expand-1 stage as a DepthwiseSeparableConv
    if block.type == "fused_mbconv" and "conv_pwl" not in convs:
        return "conv"
    return _TIMM_KINDS.get(block.type)


def _family(source: str) -> str:
    return {"monai": "monai", "efficientnet_pytorch": "monai", "torchvision": "torchvision", "timm": "timm", "timm_tf": "timm"}[source]


def convention_differences(trained: ir.Plan, target: ir.Plan) -> list[str]:
    """What ``target`` computes differently from the Plan the weights were ``trained`` in, with the same
    tensors: activations, SE gates and placement, the norm. Shapes, dims, input channels and classes may
    differ (importing adapts them); these may not, or the outputs change with no error."""
    differences = []
    if trained.norm.type != target.norm.type:
        differences.append(f"norm.type: the weights have {trained.norm.type}, this spec {target.norm.type}")
    pairs = [("stem.act", trained.stem.activation, target.stem.activation)]
    if trained.head is not None and target.head is not None and trained.head.conv and target.head.conv:
        pairs.append(("head.act", trained.head.conv.activation, target.head.conv.activation))
    blocks = {block.path: block for block in target.blocks}
    for old in trained.blocks:
        new = blocks.get(old.path)
        if new is None:
            continue
        order = [_layer_name(layer) for layer in old.layers], [_layer_name(layer) for layer in new.layers]
        if order[0] != order[1]:
            pairs.append((f"{old.path} layers", " -> ".join(order[0]), " -> ".join(order[1])))
            continue
        for was, now in zip(old.layers, new.layers):
            if isinstance(was, ir.ConvUnit) and was.act:
                pairs.append((f"{old.path}.{was.act}", was.activation, now.activation))
            elif isinstance(was, ir.SqueezeExcite):
                pairs += [(f"{old.path}.{was.name}.act", was.activation, now.activation), (f"{old.path}.{was.name}.gate", was.gate, now.gate)]
    differences += [f"{what}: the weights have {have}, this spec {want}" for what, have, want in pairs if have != want]
    return differences


def _layer_name(layer: ir.Layer) -> str:
    return layer.conv if isinstance(layer, ir.ConvUnit) else layer.name


def import_weights(peer: dict, model: torch.nn.Module, source: str, inflate: str = "center") -> Imported:
    """Map ``peer`` (a state_dict of ``source``) onto ``model``'s keys, adapting what can be adapted:
    2D kernels inflated into 3D (``inflate``: see :func:`inflate_kernel`), the stem's input channels, a classifier
    of another size."""
    target = model.state_dict()
    fresh = _fresh_decoder(target, peer, source)
    names = peer_names(model.plan, [key for key in target if key not in fresh], source)
    peer, dropped = _without_head(peer, model.plan, source)
    wanted = set(names.values())
    missing = [f"{names[k]} {list(target[k].shape)}" for k in names if names[k] not in peer]
    unexpected = [f"{printable(k)} {list(v.shape)}" for k, v in peer.items() if k not in wanted]
    problems = [f"missing {m}" for m in missing] + [f"unexpected {u}" for u in unexpected]
    if problems:
        hint = layout_hint(model.plan, list(target), peer, source)
        summary = "; ".join([*block_summary(model.plan, peer, source), f"{len(missing)} tensors missing, {len(unexpected)} unexpected"])
        raise CheckpointError(f"{source} weights do not fit this model ({summary}): " + concat_problems(problems) + (f". {hint}" if hint else ""))

    state, notes, inflated = {}, ([f"left out the weights' head and classifier ({dropped} tensors): {_headless(model.plan)} has none"] if dropped else []), 0
    if fresh:
        notes.append(f"initialised the decoder ({len(fresh)} tensors) as a new model's: the weights have none")
    bad = []  # tensors whose values cannot be weights: all of them are named in one error
    for key, value in target.items():
        if key in fresh:
            state[key] = value
            continue
        given = tensor = peer[names[key]]
        if not _importable_dtype(given.dtype, value.dtype):
            bad.append(f"{printable(names[key])} has dtype {str(given.dtype).removeprefix('torch.')}, {_DTYPE_RULE[value.dtype.is_floating_point]}")
            continue
        if tensor.shape != value.shape:
            if _is_2d_kernel_for_3d(key, tensor, value):
                tensor, inflated = inflate_kernel(tensor, value.shape[2], inflate), inflated + 1
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
        notes.append(f"inflated {inflated} kernels from 2D to 3D ({inflate})")
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
    return "a U-Net" if plan.decoder is not None else "an encoder"


def _fresh_decoder(target: dict, peer: dict, source: str) -> set[str]:
    """The U-Net decoder's keys that keep their initial values: all of them, unless the weights are an archc
    U-Net's, which hold the decoder too (then every key is imported, and a missing one is an error)."""
    keys = {key for key in target if key.startswith("decoder.")}
    if source == "archc" and any(key in peer for key in keys):
        return set()
    return keys


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
