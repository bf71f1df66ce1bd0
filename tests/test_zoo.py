"""Shipped networks by timm's names: the same parameter counts as timm's real modules, and its weights give its outputs."""

import json

import pytest
import timm
import torch
from conftest import assert_same_outputs, run_archc, timm_parameter_count_equals, timm_peer

import archc
from archc.api import shipped_aliases

# reference-numbers.md: timm 1.0.31, 2D, 3 input channels, 1000 classes (B1-B7 from the B0-B7 table, where
# torchvision, timm and MONAI agree).
TIMM_PARAMS = {
    "efficientnet_b0": 5_288_548, "efficientnet_b1": 7_794_184, "efficientnet_b2": 9_109_994, "efficientnet_b3": 12_233_232,
    "efficientnet_b4": 19_341_616, "efficientnet_b5": 30_389_784, "efficientnet_b6": 43_040_704, "efficientnet_b7": 66_347_960,
    "efficientnet_b8": 87_413_142, "efficientnet_l2": 480_309_308,
    "efficientnet_lite0": 4_652_008, "efficientnet_lite1": 5_416_680, "efficientnet_lite2": 6_092_072,
    "efficientnet_lite3": 8_197_096, "efficientnet_lite4": 13_006_568,
    "mobilenetv2_100": 3_504_872, "mobilenetv2_140": 6_108_776, "tf_efficientnetv2_s": 21_458_488,
    "mnasnet_100": 4_383_312,
    "tf_efficientnetv2_m": 54_139_356, "tf_efficientnetv2_l": 118_515_272, "tf_efficientnetv2_xl": 208_119_808,
}


@pytest.mark.parametrize("name", TIMM_PARAMS)
def test_parameter_count_equals_timms(name):
    plan, _ = timm_parameter_count_equals(name, TIMM_PARAMS[name])
    assert plan.name == name


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


# timm's default_cfg input sizes of the Lite family (timm 1.0.31, reference-numbers.md).
LITE_RESOLUTIONS = {"efficientnet_lite0": 224, "efficientnet_lite1": 240, "efficientnet_lite2": 260,
                    "efficientnet_lite3": 300, "efficientnet_lite4": 380}


@pytest.mark.parametrize("name", LITE_RESOLUTIONS)
def test_lite_keeps_stem_head_and_end_stages_as_timm_does(name):
    plan = archc.lower(name)
    with torch.device("meta"):
        peer = timm.create_model(name)
    assert plan.resolution == (LITE_RESOLUTIONS[name],) * 2 == peer.pretrained_cfg["input_size"][1:]
    assert plan.stem.out_channels == peer.conv_stem.out_channels == 32  # fix_stem=True
    assert plan.head.conv.out_channels == peer.conv_head.out_channels == 1280  # num_features=1280, unscaled
    assert [len(s.blocks) for s in plan.stages] == [len(stage) for stage in peer.blocks]  # fix_first_last=True
    assert len(plan.stages[0].blocks) == len(plan.stages[-1].blocks) == 1
    assert {u.activation for b in plan.blocks for u in b.convs} == {"relu6", None} and not any(b.se_channels for b in plan.blocks)
