"""Decoder kinds as records (archc.kinds.decoders): every consumer reaches a decoder through its kind's record, so a
second kind is one registered record; a spec naming an unknown kind, or a field its kind does not read, is refused."""

import pytest
import torch
from conftest import TINY3D

import archc
from archc import analysis, diagram, html_view, lowering
from archc.emit.decoder import UNetDecoder
from archc.errors import ArchcError, EmitError, SpecError
from archc.kinds.decoders import DECODERS, PARTS, UNET, DecoderKind, decoder_kind, register


def test_the_unet_record_names_the_unet_functions():
    assert list(DECODERS) == ["unet"]
    assert UNET.part("lowering") is lowering.unet_decoder
    assert UNET.part("module") is UNetDecoder
    assert UNET.part("analysis") is analysis.unet_costs
    assert UNET.part("drawing") is diagram.unet_nodes
    assert UNET.part("page") is html_view.unet_page
    assert archc.read(TINY3D, {"decoder.width": 4}).decoder.type == "unet"  # the default kind: decoder.type may be left out


def test_an_unknown_kind_is_refused_with_the_registered_names():
    with pytest.raises(SpecError, match=r"decoder.type: got 'fpn', expected 'unet'$"):
        archc.read(TINY3D, {"decoder.type": "fpn"})
    with pytest.raises(ArchcError, match=r"^unknown decoder type 'fpn'; expected 'unet'$"):
        decoder_kind("fpn")


@pytest.mark.parametrize("change, message", [
    ({"name": "unet"}, "decoder kind 'unet': a duplicate name"),
    ({"name": "two words"}, "decoder kind 'two words': not an identifier"),
    ({"name": "bad", "module": "UNetDecoder"}, "decoder kind 'bad': module 'UNetDecoder' is not 'package.module:name'"),
    ({"name": "bad", "fields": {"width"}}, "decoder kind 'bad': fields must be a frozenset of field names"),
])
def test_a_bad_record_fails_as_it_is_registered(change, message):
    record = DecoderKind(**{**UNET.__dict__, **change})
    with pytest.raises(ArchcError, match=f"^{message}$"):
        register(record)
    assert list(DECODERS) == ["unet"]


class HalvedDecoder(UNetDecoder):
    """A second decoder module: the U-Net's output halved, so its output tells which module the record built."""

    def forward(self, maps, size):
        return super().forward(maps, size) / 2


@pytest.fixture
def halved():
    """A second kind, registered by one record and nothing else: the U-Net's lowering, analysis, drawing and page,
    its own module, and only one spec field."""
    kind = register(DecoderKind(
        name="halved", title="a halved U-Net", summary="halved: a U-Net whose output is halved", fields=frozenset({"width"}),
        lowering=UNET.lowering, module=f"{__name__}:HalvedDecoder", analysis=UNET.analysis, drawing=UNET.drawing, page=UNET.page,
        export_dynamic=False, export_note="", weights_note=""))
    yield kind
    del DECODERS[kind.name]


def test_a_second_kind_is_one_record(halved):
    size = {"dims": 2, "resolution": (32, 32), "seed": 0}
    unet = archc.load(TINY3D, overrides=["decoder.type=unet", "decoder.width=4"], **size).eval()
    model = archc.load(TINY3D, overrides=["decoder.type=halved", "decoder.width=4"], **size).eval()
    assert model.plan.decoder.type == "halved" and type(model.decoder) is HalvedDecoder
    x = torch.randn(1, 1, 32, 32)
    with torch.no_grad():
        torch.testing.assert_close(model(x), unet(x) / 2)
    report = archc.analyze(model.plan)
    assert report.params == sum(p.numel() for p in model.parameters())
    page = html_view.view(model.plan, report, {})
    assert [row["label"] for row in page["rows"]][-1] == "Segmentation head"
    with pytest.raises(EmitError, match=r"^forward_intermediates: a halved U-Net \(a spec with a decoder\) has no single feature path"):
        model.forward_intermediates(x)
    with pytest.raises(SpecError, match=r"decoder: fuse does not apply to a halved decoder \(its fields: width\)"):
        archc.read(TINY3D, {"decoder.type": "halved", "decoder.fuse": "add"})


def test_every_part_of_every_kind_resolves():
    for kind in DECODERS.values():
        assert all(callable(kind.part(role)) for role in PARTS), kind.name
