"""Block kinds: one :class:`BlockKind` record per ``block:`` a spec row may name, in :data:`BLOCKS`.

A record holds everything archc knows about the kind: how the spec checks a row of it, how lowering turns a row
into the ordered layer records of an :class:`archc.ir.Block` (its ``recipe``), how reports title it and diagrams
colour it, and which peers' weight layouts carry it under which names. Every consumer looks the kind up here, so a
new block kind is one entry below (plus the regenerated docs/spec.md and docs/spec.schema.json).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Mapping

from .. import ir

# The optional stage-row fields a kind may accept; a field given to a kind that does not list it is refused (it
# would do nothing). spec.py checks at import that each is a field of its stage row.
ROW_FIELDS = ("start_kernel", "layer_scale", "expand_groups", "project_groups", "expand_from", "expand_conv", "grn", "mid", "shortcut")
# The weight layouts of peers that name roles per block (weights.py): "monai" (MONAI and efficientnet-pytorch),
# "torchvision" (layer positions) and "timm" (role names, renamed per timm block class by ``timm_roles``).
PEER_LAYOUTS = ("monai", "torchvision", "timm")


@dataclass(frozen=True)
class Parts:
    """What a recipe returns: the layers before the squeeze-and-excitation and after it (lowering places the SE by
    the spec's ``se.placement``), the layers on the skip path (empty: an identity skip) and whether an activation
    follows the add (ResNet)."""

    before: list
    after: list = field(default_factory=list)
    shortcut: tuple = ()  # used only where the block has a skip
    act_after: bool = False  # the block's activation after the add
    kernel: tuple | None = None  # the kernel the block is known by, where the recipe decides it (downsample: its stride)


@dataclass(frozen=True)
class BlockKind:
    name: str  # what a spec row writes: ``block: mbconv``
    title: str  # as papers name it, in reports and diagrams (an expanding kind adds its ratio: MBConv6)
    colour: str  # its fill in diagrams
    summary: str  # one line for the spec reference: the layers in order
    # recipe(make, shape, block_in, mid, out, stride, keep) -> Parts. ``make`` is lowering's conv-unit maker
    # (expand, project, depthwise, spatial, shortcut), ``mid`` the expanded width, ``keep`` whether an expansion of
    # ratio 1 keeps its conv (expand_conv, or a kind that always has one).
    recipe: Callable[..., Parts]
    expands: bool = False  # has an expansion ratio (the row's ``expand``); else expand must be 1
    always_expands: bool = False  # keeps its expansion conv at ratio 1 (uib)
    fields: frozenset[str] = frozenset()  # the optional ROW_FIELDS that apply
    mixed_kernels: bool = False  # accepts mixed_kernels (a depthwise conv to split)
    kernel_optional: bool = False  # kernel may be null (no middle depthwise conv)
    se: bool = True  # takes a squeeze-and-excitation
    se_on_output: bool = False  # placed after the projection, its SE squeezes the block's output width (timm ResNet's SEModule), not se.relative_to's
    skip: bool = True  # an identity skip by default where shapes allow (the row's ``residual`` overrides)
    once: bool = False  # one block per row, which depth scaling leaves alone (ConvNeXt's downsample opening a stage)
    check: Callable[[object], str | None] = lambda row: None  # a rule of its own on a row: the error, or None
    peers: frozenset[str] = frozenset()  # PEER_LAYOUTS whose weights carry the kind
    # archc role -> timm's name for it in this block (timm's block classes name some roles differently)
    timm_roles: Callable[[ir.Block], Mapping[str, str]] = lambda block: {}
    # the module path of the block in timm's model, where timm's model class is not EfficientNet's ``blocks.<stage>.<j>``
    timm_path: Callable[[ir.Block], str] | None = None
    # weights source -> the spec overrides its weights need in a network with this kind (beyond the source's own)
    conventions: Mapping[str, Mapping[str, object]] = field(default_factory=dict)


# timm's names for archc's roles, per timm block class (timm _efficientnet_blocks.py); a role not listed keeps its name.
_SEPARABLE = {"bn2": "bn1", "conv_pwl": "conv_pw", "bn3": "bn2"}  # DepthwiseSeparableConv
_CONV_BN_ACT = {"conv_exp": "conv", "bn": "bn1"}  # ConvBnAct
_UIB = {"conv_dw_start": "dw_start.conv", "bn_dw_start": "dw_start.bn", "conv_pw": "pw_exp.conv", "bn1": "pw_exp.bn",
        "conv_dw": "dw_mid.conv", "bn2": "dw_mid.bn", "conv_pwl": "pw_proj.conv", "bn3": "pw_proj.bn"}  # UniversalInvertedResidual


def _inverted(make, shape, block_in, mid, out, stride, keep, act=None) -> Parts:
    expansion = [make.expand(block_in, mid)] if keep else []
    before = expansion + [make.depthwise("conv_dw", "bn2", "act2", mid, shape.kernel, stride, shape.mixed)]
    return Parts(before, [make.project("bn3", mid, out, act=act)])


def _dsa(make, shape, block_in, mid, out, stride, keep) -> Parts:
    return _inverted(make, shape, block_in, mid, out, stride, keep, act="act3")


def _fused(make, shape, block_in, mid, out, stride, keep) -> Parts:
    if not keep:  # a single kxk conv (torchvision FusedMBConv with expand ratio 1)
        return Parts([make.spatial("conv_exp", "bn1", "act1", block_in, out, stride)])
    return Parts([make.spatial("conv_exp", "bn1", "act1", block_in, mid, stride)], [make.project("bn2", mid, out)])


def _conv(make, shape, block_in, mid, out, stride, keep) -> Parts:
    return Parts([make.spatial("conv", "bn", "act", block_in, out, stride)])


def _uib(make, shape, block_in, mid, out, stride, keep) -> Parts:
    # MobileNetV4 (timm UniversalInvertedResidual): the stride goes to the middle depthwise conv, else to the first.
    start = [make.depthwise("conv_dw_start", "bn_dw_start", None, block_in, shape.start, stride if shape.kernel is None else None)] if shape.start else []
    middle = [make.depthwise("conv_dw", "bn2", "act2", mid, shape.kernel, stride)] if shape.kernel else []
    return Parts(start + [make.expand(block_in, mid)] + middle, [make.project("bn3", mid, out)])


def _basic(make, shape, block_in, mid, out, stride, keep) -> Parts:
    # ResNet's basic block (timm and torchvision BasicBlock): kxk conv, norm, act; kxk conv, norm; + skip; act. Where
    # the shapes differ the skip is a 1x1 conv with the stride and a norm (timm downsample_conv: ``downsample.0/.1``).
    projection = block_in != out or any(s > 1 for s in stride)
    return Parts([make.spatial("conv1", "bn1", "act1", block_in, out, stride), make.spatial("conv2", "bn2", None, out, out, None)],
                 shortcut=make.shortcut(block_in, out, stride) if projection else (), act_after=True)


def _bottleneck(make, shape, block_in, mid, out, stride, keep) -> Parts:
    # ResNet's bottleneck (timm Bottleneck, torchvision's v1.5): 1x1 to the inner width, kxk with the stride and the row's
    # groups (ResNeXt), 1x1 to the output; + skip (projection where the shape changes); activation. The SE goes after the
    # spatial conv with se.placement after_depthwise (RegNet-Y, timm regnet.py) or after conv3 with after_project (SE-ResNet).
    projection = block_in != out or any(s > 1 for s in stride)
    return Parts([make.pointwise("conv1", "bn1", "act1", block_in, mid), make.spatial("conv2", "bn2", "act2", mid, mid, stride)],
                 [make.pointwise("conv3", "bn3", None, mid, out)],
                 shortcut=make.shortcut(block_in, out, stride) if projection else (), act_after=True)


def _bottleneck_check(row) -> str | None:
    return None if row.mid else "a bottleneck block needs mid, its inner width (ResNet-50's first stage: 64 of 256)"


def _convnext(make, shape, block_in, mid, out, stride, keep) -> Parts:
    # timm ConvNeXtBlock: depthwise kxk (bias) -> channel LayerNorm -> 1x1 fc1 (bias) -> GELU -> [GRN] -> 1x1 fc2 (bias);
    # lowering appends the layer scale (V1's gamma) from the row. timm's tiny+ compute the 1x1s as nn.Linear: same numbers.
    ones = (1,) * len(stride)
    layers = [make.unit("conv_dw", "norm", None, block_in, block_in, shape.kernel, stride, block_in, bias=True),
              make.unit("fc1", None, "act", block_in, mid, ones, ones, 1, bias=True)]
    layers += [ir.GRN("grn", mid)] if make.row.grn else []
    return Parts(layers + [make.unit("fc2", None, None, mid, out, ones, ones, 1, bias=True)])


def _downsample(make, shape, block_in, mid, out, stride, keep) -> Parts:
    # ConvNeXt between stages (timm stages.i.downsample): channel LayerNorm, then a patchify conv, kernel = stride, padding 0
    return Parts([ir.NormLayer("norm", block_in), make.unit("conv", None, None, block_in, out, stride, stride, 1, bias=True)], kernel=stride)


def _convnext_check(row) -> str | None:
    if any(s > 1 for s in row.stride):
        return "a convnext block keeps its size: stride must be 1 (a downsample row before it reduces)"
    return None


def _downsample_check(row) -> str | None:
    if "kernel" in row.model_fields_set and row.kernel is not None:
        return "a downsample block's conv has kernel = stride (patchify, padding 0): leave kernel out"
    if row.repeats != 1:
        return f"got repeats {row.repeats}, but a downsample block reduces once: repeats must be 1"
    return None


# timm ConvNeXt: the MLP under ``mlp``, V1's layer scale a raw parameter ``gamma`` of the block (role "" = the block)
_CONVNEXT = {"fc1": "mlp.fc1", "grn": "mlp.grn", "fc2": "mlp.fc2", "layer_scale": ""}


def _convnext_path(block: ir.Block) -> str:
    # timm ConvNeXtStage: stages.<i>.downsample, then stages.<i>.blocks.<j>; archc's stage i >= 1 opens with the downsample
    j = int(block.path.rpartition(".")[2])
    return f"stages.{block.stage}.blocks.{j - 1 if block.stage and j else j}" if block.type == "convnext" else f"stages.{block.stage}.downsample"


def _uib_check(row) -> str | None:
    if row.kernel is None and row.start_kernel is None and any(s > 1 for s in row.stride):
        return "a uib block without depthwise convs (kernel and start_kernel null) cannot have a stride"
    return None


def _mbconv_timm(block: ir.Block) -> Mapping[str, str]:
    # timm builds EfficientNet's expand-1 stage as a DepthwiseSeparableConv
    return _SEPARABLE if "conv_pw" not in {unit.conv for unit in block.convs} else {}


def _fused_timm(block: ir.Block) -> Mapping[str, str]:
    return _CONV_BN_ACT if "conv_pwl" not in {unit.conv for unit in block.convs} else {}


_DEPTHWISE_FIELDS = frozenset({"project_groups"})

_KINDS = (
    BlockKind("mbconv", "MBConv", "#d5efe2", "[1x1 expand] depthwise [SE] 1x1 project", _inverted, expands=True, mixed_kernels=True,
              fields=frozenset({"expand_groups", "project_groups", "expand_from", "expand_conv"}), peers=frozenset(PEER_LAYOUTS), timm_roles=_mbconv_timm),
    BlockKind("fused_mbconv", "FusedMBConv", "#e4dcf3", "(EfficientNetV2) kxk expand [SE] 1x1 project", _fused, expands=True,
              fields=frozenset({"project_groups", "expand_from", "expand_conv"}), peers=frozenset({"torchvision", "timm"}), timm_roles=_fused_timm,
              # torchvision builds EfficientNetV2 (the Fused-MBConv family) with batch-norm eps 1e-3, EfficientNet with torch's 1e-5
              conventions={"torchvision": {"norm.eps": 1e-3}}),
    BlockKind("conv", "Conv", "#fbe3c8", "conv, norm, activation", _conv, se=False, skip=False,
              peers=frozenset({"torchvision", "timm"}), timm_roles=lambda block: _CONV_BN_ACT),
    BlockKind("ds", "DSConv", "#eeeeee", "depthwise [SE] 1x1 project (MobileNet's depthwise-separable block)", _inverted, mixed_kernels=True,
              fields=_DEPTHWISE_FIELDS, peers=frozenset({"timm"}), timm_roles=lambda block: _SEPARABLE),
    BlockKind("dsa", "DSConv", "#eeeeee", "ds with an activation after the projection and no skip (MobileNetV1, LCNet)", _dsa, mixed_kernels=True,
              skip=False, fields=_DEPTHWISE_FIELDS, peers=frozenset({"timm"}), timm_roles=lambda block: _SEPARABLE),
    BlockKind("uib", "UIB", "#eeeeee", "(MobileNetV4's universal inverted bottleneck) [depthwise start_kernel] 1x1 expand [depthwise kernel] [SE] "
              "1x1 project [layer scale]", _uib, expands=True, always_expands=True, kernel_optional=True, check=_uib_check,
              fields=frozenset({"start_kernel", "layer_scale", "expand_groups", "project_groups"}), peers=frozenset({"timm"}), timm_roles=lambda block: _UIB),
    BlockKind("convnext", "ConvNeXt", "#dde8f6", "(ConvNeXt) depthwise kxk with bias, norm, 1x1 to expand x C, activation, [GRN], 1x1 back "
              "[layer scale], + skip", _convnext, expands=True, always_expands=True, se=False, check=_convnext_check,
              fields=frozenset({"layer_scale", "grn"}), peers=frozenset({"timm", "torchvision"}), timm_roles=lambda block: _CONVNEXT,
              timm_path=_convnext_path, conventions={"timm": {"norm.eps": 1e-6}, "torchvision": {"norm.eps": 1e-6}}),
    BlockKind("downsample", "Downsample", "#e8e8e8", "(ConvNeXt, between stages) norm, then a conv of kernel = stride with bias, no skip",
              _downsample, se=False, skip=False, kernel_optional=True, once=True, check=_downsample_check, peers=frozenset({"timm", "torchvision"}),
              timm_roles=lambda block: {"norm": "0", "conv": "1"}, timm_path=_convnext_path,
              conventions={"timm": {"norm.eps": 1e-6}, "torchvision": {"norm.eps": 1e-6}}),
    # timm's and torchvision's ResNets carry them (layer1.0.conv1: weights.py's ResNet layout), not MONAI's blocks.
    BlockKind("basic", "Basic", "#f6dde8", "(ResNet) kxk conv, kxk conv [SE], + skip (1x1 conv and norm where the shape changes), activation", _basic,
              fields=frozenset({"shortcut"}), se_on_output=True, peers=frozenset({"timm", "torchvision"})),
    BlockKind("bottleneck", "Bottleneck", "#f3d3c8", "(ResNet, ResNeXt, RegNet) 1x1 conv to mid, kxk conv (group_size) [SE: RegNet-Y], 1x1 conv [SE: after_project], + skip "
              "(1x1 conv and norm where the shape changes; shortcut avg: average pool first), activation", _bottleneck,
              fields=frozenset({"mid", "shortcut"}), se_on_output=True, check=_bottleneck_check, peers=frozenset({"timm", "torchvision"})),
)


def _registry(kinds: tuple[BlockKind, ...]) -> dict[str, BlockKind]:
    """The kinds by name, each checked once here, so a broken entry fails at import naming its kind."""
    found: dict[str, BlockKind] = {}
    for kind in kinds:
        problems = [what for what, bad in [
            ("its name is given twice", kind.name in found),
            ("no recipe", not callable(kind.recipe)),
            ("no title", not kind.title),
            ("no colour", not kind.colour.startswith("#")),
            (f"unknown row fields {sorted(kind.fields - set(ROW_FIELDS))}", bool(kind.fields - set(ROW_FIELDS))),
            (f"unknown peer layouts {sorted(kind.peers - set(PEER_LAYOUTS))}", bool(kind.peers - set(PEER_LAYOUTS))),
            ("always_expands without expands", kind.always_expands and not kind.expands),
        ] if bad]
        if problems:
            raise TypeError(f"block kind {kind.name!r}: {'; '.join(problems)}")
        found[kind.name] = kind
    return found


BLOCKS: dict[str, BlockKind] = _registry(_KINDS)
BLOCK_NAMES: tuple[str, ...] = tuple(BLOCKS)


def kind_of(block: ir.Block) -> BlockKind:
    return BLOCKS[block.type]
