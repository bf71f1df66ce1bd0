"""archc networks as backbones of MONAI's FlexibleUNet: an adapter to MONAI's ``BaseEncoder`` interface.

``import archc.monai`` (an explicit opt-in: ``import archc`` never imports MONAI) registers every shipped spec
and every alias of one as the backbone ``archc_<name>``:

    >>> import archc.monai
    >>> from monai.networks.nets import FlexibleUNet
    >>> unet = FlexibleUNet(in_channels=1, out_channels=2, backbone="archc_efficientnet_b0", spatial_dims=3)

and :func:`register` adds a spec of your own. What FlexibleUNet expects of an encoder, and how this one meets it:

- it is built as ``type(**parameters)`` from the dict registered for its name, with ``spatial_dims``,
  ``in_channels`` and ``pretrained`` set by FlexibleUNet: the encoder compiles the spec at those settings;
- it returns exactly ``num_outputs`` maps (at most 5), not the input itself, the i-th reduced ``2 ** (i + 1)``
  times in every axis: the decoder upsamples each 2x, and its last block (no skip) brings the finest map back
  to the input's size. A level at full resolution (a stride-1 stem) is therefore left out; where the network
  has no map at a halving (ConvNeXt's patchify stem reduces 4 at once, so it has none at 2), an empty map with
  no channels stands in, and the decoder's block there upsamples without a skip (segmentation_models.pytorch
  does the same for such encoders). Levels that do not reduce by powers of two alike in every axis (an
  anisotropic start), or a network that halves more than 5 times, are refused;
- ``num_channels_per_output`` is known when the name is registered, before any module exists: it is taken
  from the Plan, and checked against the built module;
- its decoder pads an upsampled map by at most one row to meet the skip (it expects floor division, as max
  pooling gives); archc's convolutions round up, so on a size that is not a multiple of the deepest
  reduction each returned map is cropped to ``input size // reduction``, which is what MONAI's own encoders
  return.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

from .extras import require

require("monai", "archc.monai (FlexibleUNet backbones)")

import torch  # noqa: E402
from monai.networks.blocks import BaseEncoder  # noqa: E402
from monai.networks.nets.flexible_unet import FLEXUNET_BACKBONE  # noqa: E402

from . import ir  # noqa: E402
from .analysis import analyze  # noqa: E402
from .api import DEPRECATED, LOAD_OPTIONS, MAX_PARAMS, MAX_SEED, builtin_specs, load, lower, read, shipped_aliases, shipped_spec  # noqa: E402
from .errors import ArgumentError, CheckpointError, EmitError, LoweringError, shown  # noqa: E402
from .request import FIELDS, BuildRequest, as_request  # noqa: E402
from .spec import Spec  # noqa: E402
from .weights import check_request  # noqa: E402

PREFIX = "archc_"  # backbone name of a shipped network: archc_efficientnet_b0
MAX_OUTPUTS = 5  # FlexibleUNet refuses an encoder with more feature maps
DECIDED = ("dims", "in_channels", "features_only", "num_classes")  # FlexibleUNet decides these, not register()
LOAD_ARGS = tuple(name for name in (*FIELDS, *LOAD_OPTIONS, *DEPRECATED) if name not in DECIDED)  # what register() passes on

__all__ = ["ArchcEncoder", "Backbone", "LOAD_ARGS", "MAX_OUTPUTS", "PREFIX", "level_channels", "register", "returned_levels"]


@dataclass(frozen=True)
class Backbone:
    """One registered name: what the encoder compiles, and what FlexibleUNet was told about it."""

    spec: Spec  # with the request's overrides applied
    request: BuildRequest  # what to lower it at (phi, preset, resolution, ...); FlexibleUNet adds dims and in_channels
    load_args: dict  # archc.load's own keywords (seed, weights, weights_from, inflate, max_params)
    channels: tuple[int, ...]  # of each returned map, finest first (0: an empty map, where the network has no level)
    shipped: bool  # registered by ``import archc.monai``; register() does not replace these


class ArchcEncoder(torch.nn.Module, BaseEncoder):
    """A features-only archc network returning FlexibleUNet's feature maps (finest first, input excluded)."""

    backbones: dict[str, Backbone] = {}  # every archc backbone name, in registration order

    def __init__(self, backbone: str, spatial_dims: int = 2, in_channels: int = 3, pretrained: bool = False):
        super().__init__()
        entry = self.backbones.get(backbone)
        if entry is None:
            raise ArgumentError(f"{backbone!r} is not an archc backbone; archc.monai.register() adds a spec")
        if pretrained:
            raise ArgumentError(
                f"{backbone}: archc has no weights to download, so pretrained=True cannot be honoured. Import weights "
                "you have instead: archc.monai.register(spec, name=..., weights=..., weights_from='timm' (or "
                "'torchvision', 'monai', 'efficientnet_pytorch', 'timm_tf', 'archc')) and build FlexibleUNet with that "
                "name, or load archc.load(spec, features_only=True, dims=..., in_channels=..., weights=..., "
                "weights_from=...).state_dict() into unet.encoder.network")
        request = entry.request.replace(features_only=True, dims=spatial_dims, in_channels=in_channels)
        self.network = load(entry.spec, request, **entry.load_args)
        plan = self.network.plan
        self.levels = returned_levels(plan, backbone)
        self.reductions = tuple((2 ** k,) * plan.dims for k in range(1, len(self.levels) + 1))
        channels = level_channels(plan, self.levels)
        if channels != entry.channels:
            raise EmitError(f"{backbone}: the built encoder's feature maps have {channels} channels, but "
                            f"FlexibleUNet was told {entry.channels} when the name was registered")

    @property
    def feature_info(self) -> list[dict]:
        """The returned maps, as ``model.feature_info`` describes them (timm's ``num_chs``, ``reduction``, ``module``,
        ``index``, the network's level; archc's ``stage``, ``channels``, ``reduction_per_axis``). An empty map
        standing in for a level the network does not have has 0 channels, and None for its module, index and stage."""
        return [self.network.feature_info[level] if level is not None else
                {"num_chs": 0, "reduction": reduction[0], "module": None, "index": None, "stage": None, "channels": 0,
                 "reduction_per_axis": reduction}
                for level, reduction in zip(self.levels, self.reductions)]

    def forward(self, x: torch.Tensor) -> list[torch.Tensor]:
        maps = self.network(x)  # one per reduction level, finest first
        size = x.shape[2:]
        out = []
        for level, reduction in zip(self.levels, self.reductions):
            floor = [s // r for s, r in zip(size, reduction)]  # what the decoder's padding expects (see the module doc)
            if level is None:  # no level at this halving: an empty map, which the decoder concatenates as no channels
                out.append(x.new_zeros((x.shape[0], 0, *floor)))
                continue
            fmap = maps[level]
            if list(fmap.shape[2:]) != floor:
                fmap = fmap[(..., *(slice(0, f) for f in floor))]
            out.append(fmap)
        return out

    # MONAI's BaseEncoder interface: one list entry per registered name, in the same order.

    @classmethod
    def get_encoder_names(cls) -> list[str]:
        return list(cls.backbones)

    @classmethod
    def get_encoder_parameters(cls) -> list[dict]:
        return [{"backbone": name, "spatial_dims": 2, "in_channels": 3, "pretrained": False} for name in cls.backbones]

    @classmethod
    def num_channels_per_output(cls) -> list[tuple[int, ...]]:
        return [entry.channels for entry in cls.backbones.values()]

    @classmethod
    def num_outputs(cls) -> list[int]:
        return [len(entry.channels) for entry in cls.backbones.values()]


def returned_levels(plan: ir.Plan, name: str) -> tuple[int | None, ...]:
    """For each map the encoder returns, finest first (map k reduced ``2 ** (k + 1)`` times in every axis, as
    FlexibleUNet's decoder upsamples each 2x): the index of ``plan.features`` at that reduction, or None where the
    network has no level there (an empty map stands in). A level at full resolution is left out; the others must
    reduce by powers of two alike in every axis, and halve at most 5 times."""
    levels = [i for i, f in enumerate(plan.features) if any(r != 1 for r in f.reduction)]
    found = [plan.features[i].reduction for i in levels]
    halvings = [_halvings(reduction) for reduction in found]
    shown = ", ".join(map(str, found)) or "none"
    if None in halvings:
        raise EmitError(f"{name}: FlexibleUNet's decoder upsamples each feature map 2x in every axis, so the levels must "
                        f"reduce by powers of two alike in every axis ({', '.join(str((2 ** k,) * plan.dims) for k in (1, 2, 3))}, ...); "
                        f"this network's reduce {shown}")
    if halvings and halvings[-1] > MAX_OUTPUTS:
        raise EmitError(f"{name}: FlexibleUNet takes at most {MAX_OUTPUTS} feature maps, one per halving; this network "
                        f"halves {halvings[-1]} times (its levels reduce {shown})")
    at = dict(zip(halvings, levels))
    return tuple(at.get(k) for k in range(1, (halvings[-1] if halvings else 0) + 1))


def _halvings(reduction: tuple[int, ...]) -> int | None:
    """k where ``reduction`` is 2 ** k in every axis, else None."""
    k = reduction[0].bit_length() - 1
    return k if reduction[0] == 2 ** k and len(set(reduction)) == 1 else None


def level_channels(plan: ir.Plan, levels: tuple[int | None, ...]) -> tuple[int, ...]:
    """The channels of each returned map: its level's, 0 for an empty map."""
    return tuple(0 if level is None else plan.features[level].channels for level in levels)


def register(spec: Spec | str | os.PathLike, name: str | None = None, request: BuildRequest | None = None, **load_args) -> str:
    """Register a spec (path, shipped name or Spec) as a FlexibleUNet backbone; returns its name, by default
    ``archc_<the spec's name>``. What to build is ``request`` (a :class:`~archc.request.BuildRequest`) or its fields
    as keywords (``phi``, ``preset``, ``resolution``, ``overrides``, ...); ``dims`` and ``in_channels`` are FlexibleUNet's
    (``spatial_dims``, ``in_channels``). archc.load's own keywords (``seed``, ``weights``, ``weights_from``, ``inflate``,
    ``max_params``) go to it when FlexibleUNet builds the encoder. Registering a name again replaces what register()
    gave it before; a name that MONAI, another package or ``import archc.monai`` registered is refused."""
    decided = [arg for arg in load_args if arg in DECIDED]
    decided += [arg for arg in DECIDED if request is not None and getattr(request, arg) not in (None, False) and arg not in decided]
    if decided:
        raise ArgumentError(f"{', '.join(decided)}: FlexibleUNet sets these (spatial_dims, in_channels), not register()")
    unknown = [arg for arg in load_args if arg not in LOAD_ARGS]
    if unknown:
        raise ArgumentError(f"{', '.join(unknown)}: not an argument of archc.load (expected one of {', '.join(LOAD_ARGS)})")
    options = {arg: value for arg, value in load_args.items() if arg not in FIELDS}
    request = as_request(request, **{arg: value for arg, value in load_args.items() if arg in FIELDS})
    _check_load_args(options)
    spec = read(spec, request.spec_overrides())
    request = request.replace(overrides=None, checkpointing=None)  # applied to the spec now
    name = PREFIX + spec.name if name is None else name
    if not isinstance(name, str) or not name.strip():
        raise ArgumentError(f"a backbone name must be a non-empty string, got {name!r}", file=spec.source.file)
    held = FLEXUNET_BACKBONE.register_dict.get(name)
    if held is not None and (held["type"] is not ArchcEncoder or ArchcEncoder.backbones[name].shipped):
        owner = "archc's shipped networks" if held["type"] is ArchcEncoder else f"{held['type'].__module__}.{held['type'].__name__}"
        raise ArgumentError(f"{name!r} is already a FlexibleUNet backbone (registered by {owner}); choose another name=",
                            file=spec.source.file)
    plan = lower(spec, request, features_only=True)
    channels = level_channels(plan, returned_levels(plan, name))
    _check_size(spec, request, options.get("max_params", MAX_PARAMS), name)
    _add(name, Backbone(spec, request, options, channels, shipped=False))
    return name


def _check_load_args(args: dict) -> None:
    """Refuse, when the name is registered, what archc.load would refuse (or silently ignore) only once FlexibleUNet
    builds the encoder: a mistake shows where it was made. The request's fields are checked by the request, and the
    spec's values by compiling it."""
    seed = args.get("seed")
    if seed is not None and (not isinstance(seed, int) or isinstance(seed, bool) or not 0 <= seed <= MAX_SEED):
        raise ArgumentError(f"seed must be an integer from 0 to {MAX_SEED}, got {shown(seed)}")
    limit = args.get("max_params", MAX_PARAMS)
    if limit is not None and (not isinstance(limit, int) or isinstance(limit, bool) or limit < 1):
        raise ArgumentError(f"max_params must be a positive integer (or None: no limit), got {shown(limit)}")
    check_request(args.get("weights_from", "archc"), args.get("inflate", "center"))
    weights = args.get("weights")
    if weights is not None and not isinstance(weights, dict):
        if not isinstance(weights, (str, os.PathLike)):
            raise ArgumentError(f"weights must be a state_dict or a file's path, got {shown(weights)}")
        if not os.path.isfile(weights):
            raise CheckpointError("no such file (weights)", file=os.fspath(weights))
    for flag in DEPRECATED:  # archc.load still takes them (with a DeprecationWarning) when FlexibleUNet builds the encoder
        if not isinstance(args.get(flag, False), bool):
            raise ArgumentError(f"{flag} must be True or False, got {shown(args[flag])}")


def _check_size(spec: Spec, request: BuildRequest, limit: int | None, name: str) -> None:
    """``max_params`` is a guard: refuse it now if even the smallest encoder FlexibleUNet can build from the name
    (2D, one input channel) is over it. Larger builds (3D, more channels) are checked by archc.load when built."""
    if limit is None:
        return
    params = analyze(lower(spec, request, features_only=True, dims=2, in_channels=1)).params
    if params > limit:
        raise LoweringError(f"{name}: its encoder has {params:,} parameters even in 2D with one input channel, over "
                            f"max_params={limit:,}; raise max_params (or None: no limit)", file=spec.source.file)


def _add(name: str, entry: Backbone) -> None:
    ArchcEncoder.backbones[name] = entry
    FLEXUNET_BACKBONE.register_class(ArchcEncoder)  # (re)registers every archc name with fresh parameter dicts


def _register_shipped() -> None:
    """Every shipped spec and alias as ``archc_<name>``. A network whose levels do not suit FlexibleUNet (the
    anisotropic efficientnet3d_b0) is registered too, and building it says why it cannot be used."""
    for name in dict.fromkeys([*builtin_specs(), *shipped_aliases()]):
        spec = shipped_spec(name)
        plan = lower(spec, features_only=True)
        try:
            channels = level_channels(plan, returned_levels(plan, PREFIX + name))
        except EmitError:  # said again when FlexibleUNet builds it
            channels = tuple(f.channels for f in plan.features if any(r != 1 for r in f.reduction))
        ArchcEncoder.backbones[PREFIX + name] = Backbone(spec, BuildRequest(), {}, channels, shipped=True)
    FLEXUNET_BACKBONE.register_class(ArchcEncoder)


_register_shipped()
