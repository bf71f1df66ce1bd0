"""timm's training conventions of the residual families, against timm's real modules: the stochastic-depth rate of every
block (timm's ResNet, RegNet and ConvNeXt: ``linspace(0, rate, N)``; its EfficientNet and MobileNet ``rate * i / N``),
``zero_init_last`` (each residual block's last norm starts at 0), and timm's ``create_model`` keywords refused with archc's
way of saying them."""

import pytest
import torch

import archc
from archc import weights
from archc.errors import ArgumentError


def timm_block_rates(peer: torch.nn.Module) -> list[float]:
    """Each block's drop-path rate in timm's module, in order (a block is a module with a ``drop_path`` attribute:
    DropPath, or Identity/None where the rate is 0)."""
    return [getattr(module.drop_path, "drop_prob", 0.0) for name, module in peer.named_modules()
            if hasattr(module, "drop_path") and not name.endswith("drop_path")]


@pytest.mark.parametrize("name", ["resnet50", "resnet18d", "seresnext50_32x4d", "convnext_atto", "convnextv2_tiny",
                                  "regnetx_002", "regnety_032", "efficientnet_b0", "mobilenetv3_large_100"])
def test_each_blocks_drop_path_rate_equals_timms(name):
    import timm

    with torch.device("meta"):
        peer = timm.create_model(name, drop_path_rate=0.1)
    plan = archc.lower(name, overrides={"stochastic_depth": 0.1})
    ours = [block.drop_path for block in plan.blocks if block.type != "downsample"]  # ConvNeXt's stage openings have none
    assert ours == pytest.approx(timm_block_rates(peer), abs=1e-7)  # timm's linspace is float32
    assert all(block.drop_path == 0.0 for block in plan.blocks if block.type == "downsample")


def test_the_emitted_drop_path_modules_carry_the_plans_rates():
    model = archc.load("resnet18", overrides={"stochastic_depth": 0.1}, seed=0)
    rates = [getattr(block.drop_path, "rate", 0.0) for stage in model.stages for block in stage]
    assert rates == pytest.approx([0.1 * i / 7 for i in range(8)])


@pytest.mark.parametrize("name", ["resnet18", "resnet50", "seresnet50", "convnext_atto", "efficientnet_b0"])
def test_zero_init_last_zeroes_the_norms_timm_zeroes(name):
    """The norm weights that start all zero are the same tensors in archc's module and timm's freshly built one
    (timm's ResNet: bn2 of a basic block, bn3 of a bottleneck; none in ConvNeXt V1 and EfficientNet)."""
    import timm

    torch.manual_seed(0)
    peer = timm.create_model(name).state_dict()
    model = archc.load(name, seed=0)
    ours = {key: value for key, value in model.state_dict().items() if key.endswith(".weight") and value.ndim == 1}
    names = weights.peer_names(model.plan, list(ours), "timm")
    zero_in_archc = sorted(names[key] for key, value in ours.items() if not value.any())
    zero_in_timm = sorted(key for key in names.values() if not peer[key].any())
    assert zero_in_archc == zero_in_timm
    assert bool(zero_in_timm) == name.startswith(("resnet", "seresnet"))


def test_zero_init_last_can_be_turned_off():
    model = archc.load("resnet18", overrides={"zero_init_last": False}, seed=0)
    assert all(block.bn2.weight.all() for stage in model.stages for block in stage)


@pytest.mark.parametrize("keyword, told", [
    ("drop_path_rate", "drop_path_rate is timm.create_model's argument, not archc's; in archc: overrides={'stochastic_depth': "
                       "<rate>} (spread over the blocks as the spec's stochastic_depth_schedule says)"),
    ("in_chans", "in_chans is timm.create_model's argument, not archc's; in archc: in_channels=<n>"),
    ("pretrained", "pretrained is timm.create_model's argument, not archc's; in archc: archc downloads nothing: "
                   "weights=<a state_dict or file>, weights_from='timm'"),
    ("output_stride", "output_stride is timm.create_model's argument, not archc's; in archc: none: archc has no dilated "
                      "stages; set a stage's stride with overrides={'stages[3].stride': 1}"),
])
def test_timms_keywords_are_refused_with_archcs_way_of_saying_them(keyword, told):
    with pytest.raises(ArgumentError) as caught:
        archc.load("resnet50", **{keyword: 1})
    assert str(caught.value) == told


def test_what_the_timm_keywords_point_to_exists():
    """Each spec path a refusal names is one the spec takes (the message is advice that works)."""
    plan = archc.lower("resnet50", overrides={"stochastic_depth": 0.1, "head.dropout": 0.2, "activation": "silu",
                                              "norm.type": "group", "zero_init_last": False, "stages[3].stride": 1})
    assert plan.blocks[-1].drop_path == pytest.approx(0.1) and plan.head.dropout == 0.2 and not plan.zero_init_last
