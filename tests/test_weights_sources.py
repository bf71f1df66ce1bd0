"""Weights sources as records (archc.kinds.sources): the registry is what --from, weights_from and the conventions
read; each record's conventions are its peer's, and a source refuses the block kinds its checkpoints cannot hold."""

import pytest
import timm.models.efficientnet
import torchvision
from conftest import run_archc

import archc
from archc import weights
from archc.errors import ArchcError, ArgumentError, CheckpointError
from archc.kinds.sources import NAMES, SOURCES, BlockKeys, WeightsSource, named_source, registry

ORDER = ("archc", "monai", "efficientnet_pytorch", "timm_tf", "torchvision", "timm")


def test_the_cli_and_the_api_list_the_registry():
    assert NAMES == ORDER == tuple(SOURCES)
    with pytest.raises(ArgumentError, match=f"^unknown weights source 'keras'; expected one of {', '.join(ORDER)}$"):
        weights.check_request("keras", "center")
    result = run_archc("convert", "efficientnet_b0", "--weights", "w.pth", "--from", "keras", "-o", "out.safetensors")
    assert result.returncode == 2 and "invalid choice: 'keras' (choose from " + ", ".join(map(repr, ORDER)) + ")" in result.stderr


def test_conventions_are_the_peers():
    tf_eps = timm.models.efficientnet.BN_EPS_TF_DEFAULT  # what timm builds every tf_ port with, and MONAI's TF ports
    for name in ("monai", "efficientnet_pytorch", "timm_tf"):
        assert weights.conventions(name, {"mbconv"}) == {"padding": "same", "norm.eps": tf_eps}
    # torchvision: EfficientNet with torch's default eps, EfficientNetV2 (Fused-MBConv) with 1e-3.
    b0, v2 = torchvision.models.efficientnet_b0(), torchvision.models.efficientnet_v2_s()
    assert weights.conventions("torchvision", {"mbconv"}) == {"padding": "symmetric", "norm.eps": b0.features[0][1].eps}
    assert weights.conventions("torchvision", {"mbconv", "fused_mbconv"}) == {"padding": "symmetric", "norm.eps": v2.features[0][1].eps}
    assert weights.conventions("archc", {"mbconv"}) == {}
    assert named_source("tf_efficientnet_b0").name == "timm_tf" and named_source("efficientnet_b0") is None
    assert weights.name_conventions("tf_efficientnet_b0") == {"padding": "same", "norm.eps": tf_eps}


@pytest.mark.parametrize("source, carries", [("monai", False), ("efficientnet_pytorch", False), ("torchvision", True),
                                             ("timm", True), ("timm_tf", True), ("archc", True)])
def test_a_source_carries_its_block_kinds(source, carries):
    plan = archc.lower(archc.read("efficientnetv2_s"))  # fused_mbconv in its first stages
    keys = ["stages.0.0.conv_exp.weight"]
    if carries:
        assert weights.peer_names(plan, keys, source)
    else:
        with pytest.raises(CheckpointError, match=f"^{source} weights have no fused_mbconv blocks \\(stages.0.0\\)$"):
            weights.peer_names(plan, keys, source)


@pytest.mark.parametrize("records, message", [
    ((SOURCES["timm"], SOURCES["timm"]), "weights source 'timm': a duplicate name"),
    ((WeightsSource("x", keys="x.key", block_keys={"resnet": BlockKeys(r"b\.(\d+)\.")}),),
     "weights source 'x': a key-layout function named 'x.key', not an identifier"),
    ((WeightsSource("x", keys=None, block_keys={"resnet": BlockKeys(r"b\.")}),), "weights source 'x': a block-key pattern with 0 groups, not 1 or 2"),
    ((WeightsSource("x", keys=None, block_keys={"resnet50": BlockKeys(r"b\.(\d+)\.")}),),
     "weights source 'x': block keys for resnet50, not one of efficientnet, resnet, regnet, convnext"),
    ((WeightsSource("x", keys=None, block_keys={}, conventions={"norm.momentum": 0.01}),),
     "weights source 'x': conventions for norm.momentum, not one of padding, norm.eps"),
])
def test_the_registry_checks_its_records(records, message):
    with pytest.raises(ArchcError, match=f"^{message}$"):
        registry(records)


def test_every_layout_function_exists():
    for source in SOURCES.values():
        assert source.keys is None or callable(getattr(weights, source.keys)), source.name
