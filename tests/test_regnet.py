"""archc.regnet.generate against timm's own RegNet generator (timm/models/regnet.py), config by config."""

import pytest

from archc.errors import SpecError
from archc.regnet import generate

regnet = pytest.importorskip("timm.models.regnet")

CONFIGS = sorted(name for name in regnet.model_cfgs if name.startswith(("regnetx_", "regnety_")))


def timm_stages(cfg):
    """What timm's RegNet._get_stage_args builds its four stages from (widths, depths, group widths)."""
    widths, _, groups = regnet.generate_regnet(cfg.wa, cfg.w0, cfg.wm, cfg.depth, cfg.group_size)
    stage_widths = sorted(set(widths))  # timm: torch.unique(widths, return_counts=True)
    depths = [widths.count(w) for w in stage_widths]
    ratios = [cfg.bottle_ratio] * len(stage_widths)
    stage_widths, groups = regnet.adjust_widths_groups_comp(stage_widths, ratios, groups[: len(stage_widths)], min_ratio=cfg.group_min_ratio)
    return tuple(stage_widths), tuple(depths), tuple(groups)


def test_every_timm_regnet_x_and_y_config_is_covered():
    assert len(CONFIGS) == 31  # timm 1.0.31: 14 RegNet-X and 17 RegNet-Y names (with the *_tv and *_sgn variants)


@pytest.mark.parametrize("name", CONFIGS)
def test_generate_equals_timm(name):
    cfg = regnet.model_cfgs[name]
    ours = generate(cfg.w0, cfg.wa, cfg.wm, cfg.depth, cfg.group_size, bottle_ratio=cfg.bottle_ratio,
                    rounding="torchvision" if cfg.group_min_ratio else "pycls")
    assert (ours.widths, ours.depths, ours.group_widths) == timm_stages(cfg)


def test_generate_equals_the_built_timm_module():
    """regnety_032 as timm builds it: its stages' output widths, block counts and conv2 groups."""
    torch = pytest.importorskip("torch")
    with torch.device("meta"):  # shapes only: no memory, no init
        model = regnet.regnety_032()
    stages = [getattr(model, f"s{i}") for i in range(1, 5)]
    ours = generate(80, 42.63, 2.66, 21, 24)
    assert ours.widths == tuple(s.b1.conv3.conv.out_channels for s in stages) == (72, 216, 576, 1512)
    assert ours.depths == tuple(len(list(s.children())) for s in stages) == (2, 5, 13, 1)
    assert ours.group_widths == tuple(s.b1.conv2.conv.in_channels // s.b1.conv2.conv.groups for s in stages)


@pytest.mark.parametrize("kwargs, fragment", [
    ({"w0": 20}, "w0=20"),
    ({"wm": 1.0}, "wm=1.0"),
    ({"rounding": "tf"}, "rounding: got 'tf'"),
])
def test_bad_parameters_name_the_value(kwargs, fragment):
    args = {"w0": 24, "wa": 36.44, "wm": 2.49, "depth": 13, "group_width": 8} | kwargs
    with pytest.raises(SpecError, match=fragment):
        generate(**args)
