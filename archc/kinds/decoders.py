"""Decoder kinds: one :class:`DecoderKind` record per ``decoder.type`` a spec may name ("unet" today).

A record says where everything archc does with a decoder of that kind lives: how the spec's decoder section
lowers onto the encoder's feature levels (an ``ir.Decoder`` whose ``type`` is the record's name), the module that
runs it, its costs in the analysis, its nodes in the diagram and its parts on the HTML page, what exporting and
importing weights say about it. Each consumer looks the record up by ``plan.decoder.type`` (``spec.decoder.type``
in lowering) and calls what it names; none of them names a kind.

The parts are named ``"module:function"`` and imported when first used, so reading a spec (``archc validate``,
``archc info``) never imports torch or graphviz, and this module imports only ``errors``.

Adding a decoder kind is one :func:`register` call: a record naming its lowering, module, analysis, drawing and
page (functions of a module of its own, say ``archc/decoders/fpn.py``, written against the interfaces below), the
spec decoder fields it reads, its export and weights notes; then regenerate docs/spec.md and
docs/spec.schema.json (``python -m archc schema``), whose ``decoder.type`` lists the registry. No consumer changes:
``spec.Decoder.type`` accepts every registered name, and a spec setting a field its kind does not read is refused.
The interfaces (the U-Net's functions are the reference implementation):

- ``lowering(spec, axes, features, num_classes, spec_classes, stages) -> ir.Decoder``: ``lowering.unet_decoder``
- ``module(plan, layers) -> nn.Module``, called ``(maps finest first, input size)``: ``emit.decoder.UNetDecoder``
- ``analysis(walk, decoder, taps, parts, rows)``, appending costs and rows: ``analysis.unet_costs``
- ``drawing(graph, plan, report, previous, ends, beside)``, adding graphviz nodes: ``diagram.unet_nodes``
- ``page(plan) -> html_view.DecoderPage``, its parts' labels and kinds and its rows' titles: ``html_view.unet_page``
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ..errors import ArchcError

_REFERENCE = re.compile(r"^[A-Za-z_][\w.]*:[A-Za-z_]\w*$")  # "package.module:name"
PARTS = ("lowering", "module", "analysis", "drawing", "page")  # the fields a record names a function or class with


@dataclass(frozen=True)
class DecoderKind:
    name: str  # the spec's decoder.type, and ir.Decoder.type
    title: str  # a network with it, in messages: "a U-Net"
    summary: str  # what it is, for the spec's documentation of decoder.type
    fields: frozenset[str]  # the spec decoder section's fields it reads (besides type); setting another is a SpecError
    lowering: str
    module: str
    analysis: str
    drawing: str
    page: str
    # torch.export keeps the spatial axes dynamic (with symmetric padding); False: the program keeps the example's size.
    export_dynamic: bool
    export_note: str  # what exporting should know (deploy's docstring says the same for the U-Net)
    weights_note: str  # what importing weights does to it

    def part(self, role: str):
        """The function or class a part names (``role``: one of PARTS), imported now."""
        import importlib

        module, _, name = getattr(self, role).partition(":")
        return getattr(importlib.import_module(module), name)


DECODERS: dict[str, DecoderKind] = {}  # name -> record, in registration order


def register(kind: DecoderKind) -> DecoderKind:
    """Add a kind to the registry, checking the record first: a bad one fails here (at import for archc's own)."""
    problem = (
        "not an identifier" if not kind.name.isidentifier()
        else "a duplicate name" if kind.name in DECODERS
        else next((f"{role} {getattr(kind, role)!r} is not 'package.module:name'" for role in PARTS
                   if not isinstance(getattr(kind, role), str) or not _REFERENCE.match(getattr(kind, role))), None)
        or (None if isinstance(kind.fields, frozenset) and all(isinstance(f, str) and f.isidentifier() for f in kind.fields)
            else "fields must be a frozenset of field names")
    )
    if problem:
        raise ArchcError(f"decoder kind {kind.name!r}: {problem}")
    DECODERS[kind.name] = kind
    return kind


def decoder_kind(name: str) -> DecoderKind:
    """The record of a registered kind; an unknown name is an error listing the registered ones."""
    if name not in DECODERS:
        raise ArchcError(f"unknown decoder type {name!r}; expected {' or '.join(map(repr, DECODERS))}")
    return DECODERS[name]


UNET = register(DecoderKind(
    name="unet",
    title="a U-Net",
    summary="unet: the deepest feature level is the bottleneck; each level upsamples and joins the next finer one",
    fields=frozenset({"width", "channels", "block", "repeats", "expand", "kernel", "upsample", "fuse", "activation", "deep_supervision"}),
    lowering="archc.lowering:unet_decoder",
    module="archc.emit.decoder:UNetDecoder",
    analysis="archc.analysis:unet_costs",
    drawing="archc.diagram:unet_nodes",
    page="archc.html_view:unet_page",
    export_dynamic=False,
    export_note=("a level's crop to its skip's size is a guard torch.export cannot prove for every size: .pt2 programs keep the "
                 "example's size; ONNX and TorchScript run at any size (sliding-window inference)"),
    weights_note="peers' weights hold no decoder: it starts as a new model's; an archc U-Net checkpoint holds it, and every key is imported",
))
