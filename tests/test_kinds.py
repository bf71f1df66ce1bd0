"""The kind records (archc.kinds): each registry refuses a broken entry at import, naming it; each norm's record
builds torch's own module and counts its parameters as torch does."""

import dataclasses

import pytest
from torch import nn

from archc import ir
from archc.emit.ops import ChannelLayerNorm, LayerFactory
from archc.kinds import blocks, layers, norms


@pytest.mark.parametrize("dims", [1, 2, 3])
def test_each_norm_builds_torchs_module_with_the_parameters_its_record_counts(dims):
    expected = {"batch": nn.BatchNorm1d if dims == 1 else nn.BatchNorm2d if dims == 2 else nn.BatchNorm3d, "group": nn.GroupNorm,
                "instance": (nn.InstanceNorm1d, nn.InstanceNorm2d, nn.InstanceNorm3d)[dims - 1], "layer": ChannelLayerNorm}
    assert set(expected) == set(norms.NORMS)
    for name, kind in norms.NORMS.items():
        module = LayerFactory(dims, ir.Norm(name, 1e-3, 0.01, 4), "symmetric").norm(24)
        assert type(module) is expected[name]
        assert kind.params(24) == sum(p.numel() for p in module.parameters()) == 48  # every archc norm is affine
    # torch's own modules as archc asks for them, to the parameter
    assert sum(p.numel() for p in nn.InstanceNorm2d(24, affine=True).parameters()) == 48
    assert sum(p.numel() for p in nn.GroupNorm(4, 24).parameters()) == 48


def test_a_broken_block_kind_fails_when_its_registry_is_built_naming_it():
    good = blocks.BLOCKS["mbconv"]
    with pytest.raises(TypeError, match="block kind 'mine': no recipe"):
        blocks._registry((dataclasses.replace(good, name="mine", recipe=None),))
    with pytest.raises(TypeError, match=r"block kind 'mine': unknown row fields \['kernel_size'\]"):
        blocks._registry((dataclasses.replace(good, name="mine", fields=frozenset({"kernel_size"})),))
    with pytest.raises(TypeError, match="block kind 'mbconv': its name is given twice"):
        blocks._registry((good, good))


def test_a_consumer_table_without_a_layer_kind_fails_naming_the_class():
    with pytest.raises(TypeError, match="^diagram: no entry for the layer kind LayerScale$"):
        layers.table("diagram", {kind: print for kind in ir.LAYERS if kind is not ir.LayerScale})
    with pytest.raises(TypeError, match="int is not in ir.LAYERS"):
        layers.table("analysis", {**dict.fromkeys(ir.LAYERS, print), int: print})
