"""The build request: what to lower a spec at, as one frozen record.

The command line (``archc build/info/render/... --phi 2 --dims 3``), the API (``archc.load``, ``archc.lower``,
``archc.render``, ``archc.build``) and the MONAI registry (``archc.monai.register``) all fill a
:class:`BuildRequest` and pass it on; a saved model stores it (``BuildRequest.to_dict``) and is rebuilt from it.
Each field is checked here, once, whoever filled it (nanoGPT's ``GPTConfig`` is the model: config in, module out).

What is *not* part of the request: the seed and the weights to import (how the module's values are set), and
``max_params`` (a guard that refuses a build, not something that changes what is built).
"""

from __future__ import annotations

import dataclasses
import math
from dataclasses import dataclass

from .errors import ArgumentError, shown
from .spec import MAX_SIZE

__all__ = ["BuildRequest", "FIELDS", "LOWERING_FIELDS", "as_request"]


@dataclass(frozen=True)
class BuildRequest:
    """What to lower a spec at. Every field left at its default keeps what the spec says.

    >>> BuildRequest(phi=2, dims=3, in_channels=1, num_classes=2)
    """

    phi: float | None = None
    """Compound scaling coefficient (may be fractional or negative); exclusive with ``preset``."""

    preset: str | None = None
    """A row of the spec's ``scaling.presets`` (``"b3"``); exclusive with ``phi``."""

    dims: int | None = None
    """Spatial dimensions: 1, 2 or 3 (None: the spec's ``dims``)."""

    in_channels: int | None = None
    """Input channels, 1 or more (None: the spec's)."""

    num_classes: int | None = None
    """Classes (or a U-Net's output channels), 0 or more; 0 leaves out the classifier (None: the spec's)."""

    resolution: int | tuple[int, ...] | None = None
    """Input size: one number, or one per axis; it wins over a scaled one (None: the spec's, scaled)."""

    overrides: dict | tuple[str, ...] | None = None
    """Spec values to replace before validation: ``{"norm.type": "group"}`` or ``("stages[3].se=none", ...)``
    (a list is kept as a tuple)."""

    features_only: bool = False
    """No head: the module returns the feature map of each reduction level (a U-Net's encoder)."""

    checkpointing: bool | None = None
    """Activation checkpointing per block (recompute in backward); None: the spec's ``checkpointing``."""

    def __post_init__(self):
        _check(self)
        if isinstance(self.resolution, list):
            object.__setattr__(self, "resolution", tuple(self.resolution))
        if isinstance(self.overrides, list):
            object.__setattr__(self, "overrides", tuple(self.overrides))
        elif isinstance(self.overrides, dict):
            object.__setattr__(self, "overrides", dict(self.overrides))  # the caller's mapping may change later

    def lowering_args(self) -> dict:
        """The fields lowering takes (:func:`archc.lowering.lower`), those that are set."""
        return {name: value for name in LOWERING_FIELDS if (value := getattr(self, name)) is not None and value is not False}

    def spec_overrides(self) -> dict | tuple | None:
        """The overrides to read the spec with: ``overrides``, then ``checkpointing`` when it is set."""
        if self.checkpointing is None:
            return self.overrides
        if isinstance(self.overrides, tuple):
            return (*self.overrides, f"checkpointing={str(self.checkpointing).lower()}")
        return {**(self.overrides or {}), "checkpointing": self.checkpointing}

    def to_dict(self) -> dict:
        """The fields that are set, as JSON stores them (a saved model's build arguments)."""
        out = {}
        for name in FIELDS:
            value = getattr(self, name)
            if value is None or value is False and name == "features_only":
                continue
            out[name] = list(value) if isinstance(value, tuple) else value
        return out

    @classmethod
    def from_dict(cls, values: dict) -> BuildRequest:
        """The request :meth:`to_dict` wrote (or a saved model of an earlier archc: the same names, fewer of them)."""
        unknown = sorted(set(values) - set(FIELDS))
        if unknown:
            raise ArgumentError(f"{', '.join(map(shown, unknown))}: not a field of a build request (expected {', '.join(FIELDS)})")
        return cls(**values)

    def replace(self, **fields) -> BuildRequest:
        """A copy with ``fields`` changed (checked like a new request)."""
        return as_request(self, **fields)


FIELDS = tuple(field.name for field in dataclasses.fields(BuildRequest))
LOWERING_FIELDS = ("phi", "preset", "dims", "in_channels", "num_classes", "resolution", "features_only")  # lowering's own arguments


# timm.create_model's keywords that people bring to archc.load, and what archc calls them or why it has none: refused
# with this told, so a timm keyword never builds a silently different network.
TIMM_ARGUMENTS = {
    "in_chans": "in_channels=<n>",
    "drop_path_rate": "overrides={'stochastic_depth': <rate>} (spread over the blocks as the spec's stochastic_depth_schedule says)",
    "drop_rate": "overrides={'head.dropout': <rate>}",
    "pretrained": "archc downloads nothing: weights=<a state_dict or file>, weights_from='timm'",
    "pretrained_cfg": "archc downloads nothing: weights=<a state_dict or file>, weights_from='timm'",
    "checkpoint_path": "weights=<file>, weights_from='timm'",
    "global_pool": "archc pools by average only (timm's 'avg'); model.reset_classifier(n) as in timm",
    "out_indices": "features_only=True returns every level (timm's default out_indices); take the ones you need from the list",
    "output_stride": "none: archc has no dilated stages; set a stage's stride with overrides={'stages[3].stride': 1}",
    "act_layer": "overrides={'activation': <name>}",
    "norm_layer": "overrides={'norm.type': <name>}",
    "zero_init_last": "overrides={'zero_init_last': <bool>}",
    "scriptable": "nothing to ask: every archc network scripts and traces as built",
    "exportable": "nothing to ask: every archc network scripts and traces as built",
}


def as_request(request: BuildRequest | None = None, **fields) -> BuildRequest:
    """``request`` with ``fields`` (the request's fields as keywords) set over it; a field that is not one is refused
    (a keyword of timm's ``create_model`` with archc's way of saying it)."""
    unknown = [name for name in fields if name not in FIELDS]
    timm_names = [name for name in unknown if name in TIMM_ARGUMENTS]
    if timm_names:
        name = timm_names[0]
        raise ArgumentError(f"{name} is timm.create_model's argument, not archc's; in archc: {TIMM_ARGUMENTS[name]}")
    if unknown:
        raise ArgumentError(f"{', '.join(unknown)}: not a field of a build request (expected one of {', '.join(FIELDS)})")
    if request is None:
        return BuildRequest(**fields)
    if not isinstance(request, BuildRequest):
        raise ArgumentError(f"request must be an archc.BuildRequest, got {shown(request)}")
    return dataclasses.replace(request, **fields) if fields else request


def _whole(value) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _check(r: BuildRequest) -> None:
    """Types and ranges, each error naming its field: the values come from Python callers and saved files as well
    as the CLI, so ``dims=True`` or ``phi="x"`` is an error and not a 1 or a traceback."""
    if r.phi is not None and not (_whole(r.phi) or isinstance(r.phi, float) and math.isfinite(r.phi)):
        raise ArgumentError(f"phi must be a number, got {shown(r.phi)}")
    if r.preset is not None and not isinstance(r.preset, str):
        raise ArgumentError(f"preset must be a name, got {shown(r.preset)}")
    if r.dims is not None and not (_whole(r.dims) and r.dims in (1, 2, 3)):
        raise ArgumentError(f"dims must be 1, 2 or 3, got {shown(r.dims)}")
    if r.in_channels is not None and not (_whole(r.in_channels) and r.in_channels >= 1):
        raise ArgumentError(f"in_channels must be a whole number of at least 1, got {shown(r.in_channels)}")
    if r.num_classes is not None and not (_whole(r.num_classes) and r.num_classes >= 0):
        raise ArgumentError(f"num_classes must be a whole number, 0 or more, got {shown(r.num_classes)}")
    if r.resolution is not None:
        values = tuple(r.resolution) if isinstance(r.resolution, (tuple, list)) else (r.resolution,)
        if not values or not all(_whole(v) and 1 <= v <= MAX_SIZE for v in values):
            raise ArgumentError(f"resolution must be integers from 1 to {MAX_SIZE:,}, got {shown(r.resolution)}")
        if len(values) > 3:
            raise ArgumentError(f"resolution has {len(values)} values; give one, or one per axis (at most 3)")
    if r.overrides is not None and not isinstance(r.overrides, (dict, list, tuple)):
        raise ArgumentError(f"overrides must be a mapping (path: value) or a list of PATH=VALUE texts, got {shown(r.overrides)}")
    if not isinstance(r.features_only, bool):
        raise ArgumentError(f"features_only must be True or False, got {shown(r.features_only)}")
    if r.checkpointing is not None and not isinstance(r.checkpointing, bool):
        raise ArgumentError(f"checkpointing must be True, False or None (the spec's), got {shown(r.checkpointing)}")
