"""Shipped networks by timm's names: its weights give its outputs, the CLI builds them, timm's TF ports are names that
build what timm builds, and Lite keeps what timm keeps fixed. Parameters, blocks and 1D/3D builds of every name:
tests/test_family_table.py."""

import json

import pytest
import timm
import torch
from conftest import assert_same_outputs, run_archc, timm_peer

import archc
from archc.api import shipped_aliases


@pytest.mark.parametrize("name", ["efficientnet_b3", "mnasnet_100", "mobilenetv2_140", "efficientnet_lite0"])
def test_timm_weights_give_timms_outputs(name):
    peer = timm_peer(name, 72)
    model = archc.load(name, weights=peer.state_dict(), weights_from="timm", resolution=72).eval()
    assert_same_outputs(model, peer, 72)


def test_a_timm_name_builds_in_every_dimensionality():
    result = run_archc("build", "mobilenetv2_140", "--dims", "3", "--in-channels", "1", "--num-classes", "2", "--resolution", "32", "-q")
    assert result.returncode == 0, result.stderr
    assert result.stdout.startswith("mobilenetv2_140: 3D, preset 1.4 (width 1.400, depth 1.000), input 1x32x32x32")
    listed = {entry["preset"]: entry["aliases"] for entry in json.loads(run_archc("list", "--json").stdout)
              if entry["name"] == "efficientnet_b0"}
    assert listed["b3"] == ["efficientnet_b3", "tf_efficientnet_b3"] and listed["l2"] == ["efficientnet_l2", "tf_efficientnet_l2"]


TF_PORTS = sorted(name for name in shipped_aliases() if name.startswith("tf_"))


def test_every_tf_port_timm_has_for_a_shipped_network_is_a_name():
    """timm's tf_<name> models whose <name> archc ships (the rest: EfficientNet-CC, V2-B0..B3 and the minimal MobileNetV3s)."""
    known = set(archc.builtin_specs()) | set(shipped_aliases())
    assert TF_PORTS == [name for name in timm.list_models("tf_*") if name.removeprefix("tf_") in known]
    assert len(TF_PORTS) == 29


@pytest.mark.parametrize("name", TF_PORTS)
def test_a_tf_name_builds_what_timm_builds(name):
    """With no weights too: TF "same" padding (timm's Conv2dSame) and batch-norm eps 1e-3, with timm's parameters."""
    plan = archc.lower(name)
    with torch.device("meta"):
        peer = timm.create_model(name)
    assert plan.name == name and plan.padding == "same" and type(peer.conv_stem).__name__ == "Conv2dSame"
    assert {plan.norm.eps} == {m.eps for m in peer.modules() if isinstance(m, torch.nn.BatchNorm2d)} == {1e-3}
    assert archc.analyze(plan).params == sum(p.numel() for p in peer.parameters())


@pytest.mark.parametrize("name", ["efficientnet_lite0", "efficientnet_lite1", "efficientnet_lite2", "efficientnet_lite3", "efficientnet_lite4"])
def test_lite_keeps_stem_head_and_end_stages_as_timm_does(name):
    """timm's _gen_efficientnet_lite: fix_stem=True (32), num_features=1280 unscaled, fix_first_last=True (one block
    in the first and last stages), ReLU6 and no SE. That these equal timm's module: tests/test_family_table.py."""
    plan = archc.lower(name)
    assert plan.stem.out_channels == 32 and plan.head.conv.out_channels == 1280
    assert len(plan.stages[0].blocks) == len(plan.stages[-1].blocks) == 1
    assert {u.activation for b in plan.blocks for u in b.convs} == {"relu6", None} and not any(b.se_channels for b in plan.blocks)
