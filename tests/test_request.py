"""The build request (archc/request.py): one record of what to lower, filled by the API, the CLI and the MONAI registry;
archc.load's own parameters; the finishing keywords' deprecation; argument errors; the public names."""

import ast
import dataclasses
import importlib
import inspect
import warnings
from pathlib import Path

import pytest
import torch
from conftest import TINY3D

import archc
from archc import api, scaling
from archc.cli import _parser, _request
from archc.diagram import to_dot
from archc.errors import ArchcError, ArgumentError, LoweringError, ScalingError
from archc.request import FIELDS, BuildRequest, as_request

ARCHC = Path(archc.__file__).parent


def test_the_request_is_a_frozen_record_of_what_to_lower():
    request = BuildRequest(phi=1.5, resolution=[32, 64, 64], overrides=["norm.type=group"])
    assert request.resolution == (32, 64, 64) and request.overrides == ("norm.type=group",)  # lists are kept as tuples
    with pytest.raises(dataclasses.FrozenInstanceError):
        request.phi = 2
    assert FIELDS == ("phi", "preset", "dims", "in_channels", "num_classes", "resolution", "overrides", "features_only", "checkpointing")
    assert request.replace(dims=3) == BuildRequest(phi=1.5, dims=3, resolution=(32, 64, 64), overrides=("norm.type=group",))
    assert BuildRequest.from_dict(request.to_dict()) == request
    assert request.to_dict() == {"phi": 1.5, "resolution": [32, 64, 64], "overrides": ["norm.type=group"]}


@pytest.mark.parametrize("fields, message", [
    ({"phi": "x"}, "phi must be a number, got 'x'"),
    ({"phi": float("nan")}, "phi must be a number, got nan"),
    ({"phi": True}, "phi must be a number, got True"),
    ({"preset": 3}, "preset must be a name, got 3"),
    ({"dims": 4}, "dims must be 1, 2 or 3, got 4"),
    ({"dims": True}, "dims must be 1, 2 or 3, got True"),
    ({"in_channels": 0}, "in_channels must be a whole number of at least 1, got 0"),
    ({"num_classes": -1}, "num_classes must be a whole number, 0 or more, got -1"),
    ({"num_classes": 2.0}, "num_classes must be a whole number, 0 or more, got 2.0"),
    ({"resolution": 0}, "resolution must be integers from 1 to 1,000,000, got 0"),
    ({"resolution": (8, 8, 8, 8)}, "resolution has 4 values; give one, or one per axis (at most 3)"),
    ({"overrides": "norm.type=group"}, "overrides must be a mapping (path: value) or a list of PATH=VALUE texts, got 'norm.type=group'"),
    ({"features_only": 1}, "features_only must be True or False, got 1"),
    ({"checkpointing": "yes"}, "checkpointing must be True, False or None (the spec's), got 'yes'"),
])
def test_each_field_is_checked_once_naming_it(fields, message):
    """The same check and message whoever fills the request: the record, archc.lower's keywords, the lowering itself."""
    for attempt in (lambda: BuildRequest(**fields), lambda: archc.lower(TINY3D, **fields), lambda: archc.lower(TINY3D, BuildRequest(), **fields)):
        with pytest.raises(ArgumentError) as raised:
            attempt()
        assert str(raised.value) == message


def test_an_unknown_field_is_refused():
    with pytest.raises(ArgumentError, match=r"^mystery: not a field of a build request \(expected one of phi, preset, dims, "):
        as_request(mystery=1)
    with pytest.raises(ArgumentError, match=r"^'mystery': not a field of a build request"):
        BuildRequest.from_dict({"dims": 2, "mystery": 1})


def test_a_request_and_its_fields_as_keywords_lower_alike():
    request = BuildRequest(preset="b2", dims=3, in_channels=1, num_classes=4, resolution=(16, 64, 64), overrides={"norm.eps": 0.01})
    plan = archc.lower("efficientnet_b0", request)
    assert plan == archc.lower("efficientnet_b0", **request.to_dict() | {"resolution": (16, 64, 64)})
    assert (plan.dims, plan.in_channels, plan.head.num_classes, plan.resolution, plan.norm.eps, plan.scaling.preset) == (3, 1, 4, (16, 64, 64), 0.01, "b2")
    assert archc.lower(TINY3D, BuildRequest(num_classes=5), num_classes=7).head.num_classes == 7  # a keyword wins over the request
    assert archc.lower(TINY3D, checkpointing=True).checkpointing and not archc.lower(TINY3D).checkpointing
    assert archc.lower(TINY3D, {"stem.channels": 16}).stem.out_channels == 16  # the earlier positional overrides still work
    with pytest.raises(ArgumentError, match="overrides given twice"):
        archc.lower(TINY3D, {"stem.channels": 16}, overrides={"stem.channels": 24})


def test_the_command_line_fills_the_same_request():
    args = _parser().parse_args(["build", "efficientnet_b0", "--phi", "1.5", "--dims", "3", "--in-channels", "1", "--num-classes", "0",
                                 "--resolution", "32,64,64", "--features-only", "--set", "norm.type=group"])
    assert _request(args) == BuildRequest(phi=1.5, dims=3, in_channels=1, num_classes=0, resolution=(32, 64, 64), features_only=True,
                                          overrides=("norm.type=group",))
    assert _request(_parser().parse_args(["info", "efficientnet_b0"])) == BuildRequest()


def test_load_has_the_source_a_request_a_seed_weights_and_a_guard():
    """At most 8 parameters of its own (**fields counts as one); it no longer reads its own locals() or signature."""
    assert list(inspect.signature(archc.load).parameters) == ["source", "request", "seed", "weights", "weights_from", "inflate", "max_params", "fields"]
    assert "locals()" not in inspect.getsource(api) and "signature(load)" not in inspect.getsource(api)
    request = BuildRequest(num_classes=5, resolution=24, overrides={"stem.channels": 16})
    by_record, by_fields = archc.load(TINY3D, request, seed=0), archc.load(TINY3D, seed=0, num_classes=5, resolution=24, overrides={"stem.channels": 16})
    assert by_record.plan == by_fields.plan and by_record.archc_source == by_fields.archc_source
    assert by_record.archc_source.request == request
    assert all(torch.equal(a, b) for a, b in zip(by_record.state_dict().values(), by_fields.state_dict().values()))


REPLACEMENTS = {
    "fuse": ("model.fuse_norms()", lambda model: model.fuse_norms()),
    "channels_last": ("model.set_channels_last()", lambda model: model.set_channels_last()),
    "sync_bn": ("torch.nn.SyncBatchNorm.convert_sync_batchnorm(model)", torch.nn.SyncBatchNorm.convert_sync_batchnorm),
}


@pytest.mark.parametrize("keyword", REPLACEMENTS)
def test_a_finishing_keyword_warns_naming_its_replacement_and_gives_what_the_replacement_gives(keyword, tmp_path):
    replacement, finish = REPLACEMENTS[keyword]
    with pytest.warns(DeprecationWarning) as caught:
        old = archc.load(TINY3D, seed=0, **{keyword: True})
    assert [str(w.message) for w in caught if w.category is DeprecationWarning] == [
        f"archc.load(..., {keyword}=...) is deprecated and goes in archc 0.3: call {replacement} on the model instead"]
    new = finish(archc.load(TINY3D, seed=0))
    _same(old, new)
    archc.save(archc.load(TINY3D, seed=0), tmp_path / "m.safetensors")
    with pytest.warns(DeprecationWarning, match=rf"^archc\.restore\(\.\.\., {keyword}=\.\.\.\) is deprecated"):
        restored = archc.restore(tmp_path / "m.safetensors", **{keyword: True})
    _same(restored, new)


def _same(a, b):
    assert [type(m) for m in a.modules()] == [type(m) for m in b.modules()]
    assert (a.training, a.fused, a.memory_format) == (b.training, b.fused, b.memory_format)
    assert a.state_dict().keys() == b.state_dict().keys()
    for (name, x), y in zip(a.state_dict().items(), b.state_dict().values()):
        assert torch.equal(x, y) and x.stride() == y.stride(), name


def test_without_the_old_keywords_nothing_warns(tmp_path):
    with warnings.catch_warnings():
        warnings.simplefilter("error", DeprecationWarning)
        archc.save(archc.load(TINY3D, BuildRequest(checkpointing=True), seed=0, max_params=None), tmp_path / "m.safetensors")
        archc.restore(tmp_path / "m.safetensors", max_params=10**6)


def _tiny():
    return archc.load(TINY3D, seed=0)


# Each was a stage's error (LoweringError, CheckpointError, EmitError, ScalingError or ArchcError) for a bad argument.
RECLASSIFIED = [
    (lambda: archc.load(TINY3D, seed=-1), "seed must be an integer from 0 to 18446744073709551615, got -1"),  # was LoweringError
    (lambda: archc.load(TINY3D, max_params=0), "max_params must be a positive integer (or None: no limit), got 0"),
    (lambda: archc.load(TINY3D, weights_from="keras"), "unknown weights source 'keras'; expected one of "),  # was CheckpointError
    (lambda: archc.load(TINY3D, inflate="sideways"), "unknown inflation 'sideways'; 2D kernels go into 3D by 'center' or 'mean'"),  # was CheckpointError
    (lambda: archc.lower(TINY3D, dims=4), "dims must be 1, 2 or 3, got 4"),  # was LoweringError
    (lambda: archc.render(TINY3D, format="svg"), "unknown format 'svg'; expected html"),  # was EmitError
    (lambda: archc.save(_tiny(), "m.pt"), "m.pt: a saved model is a .safetensors file"),  # was EmitError
    (lambda: _tiny().reset_classifier(-1), "num_classes must be a non-negative integer, got -1"),  # was EmitError
    (lambda: _tiny().reset_classifier(2, global_pool="max"), "global_pool='max': archc's head pools by average only"),  # was EmitError
    (lambda: _tiny().forward_intermediates(torch.zeros(1, 1, 32, 32, 32), indices=9), "forward_intermediates: indices=9 asks for the last 9 maps"),
    (lambda: archc.load(TINY3D, dims=1).set_channels_last(), "channels_last is a memory order of 2D and 3D tensors; a 1D model has none"),
    (lambda: to_dot(archc.lower(TINY3D), detail="everything"), "unknown detail 'everything'"),  # was EmitError
    (lambda: scaling.compound(float("inf"), 1.2, 1.1, 1.15), "phi must be a finite number, got inf"),  # was ScalingError
    (lambda: archc.build(archc.lower(TINY3D), num_classes=3), "a Plan is built as it is; num_classes cannot apply to it"),
]


@pytest.mark.parametrize("attempt, message", RECLASSIFIED)
def test_a_bad_argument_is_an_argument_error(attempt, message):
    with pytest.raises(ArgumentError) as raised:
        attempt()
    assert type(raised.value) is ArgumentError and message in str(raised.value)
    assert isinstance(raised.value, ValueError) and isinstance(raised.value, ArchcError)  # caught as before
    assert not isinstance(raised.value, LoweringError)


def test_scaling_is_part_of_lowering():
    assert issubclass(ScalingError, LoweringError) and issubclass(ArgumentError, ValueError) and archc.ArgumentError is ArgumentError
    with pytest.raises(LoweringError, match="give phi or preset, not both") as raised:
        archc.lower("efficientnet_b0", phi=1, preset="b1")
    assert type(raised.value) is ScalingError


def test_build_takes_a_spec_as_the_command_line_does():
    """``archc.build(SPEC, ...)`` is ``archc build SPEC``: a module from a spec with a request; a Plan still builds as before."""
    plan = archc.lower(TINY3D, num_classes=5)
    from_spec, from_plan = archc.build(TINY3D, BuildRequest(num_classes=5), seed=0), archc.build(plan, seed=0)
    assert from_spec.plan == from_plan.plan == plan and from_spec.archc_source.request == BuildRequest(num_classes=5)
    assert all(torch.equal(a, b) for a, b in zip(from_spec.state_dict().values(), from_plan.state_dict().values()))
    assert archc.build("efficientnet_b0", preset="b1", resolution=32).plan == archc.lower("efficientnet_b0", preset="b1", resolution=32)


def test_reading_a_spec_again_keeps_what_it_was_read_with():
    """archc.read(spec, overrides) of a spec read by another name (an alias: its name, preset, TF padding and eps) or with
    overrides of its own used to start again from the file's text, dropping them."""
    alias = archc.read("tf_efficientnet_b1")
    for overrides in ({"norm.momentum": 0.2}, ["norm.momentum=0.2"]):
        again = archc.read(alias, overrides)
        assert (again.name, again.padding, again.scaling.preset, again.norm.eps, again.norm.momentum) == ("tf_efficientnet_b1", "same", "b1", 1e-3, 0.2)
        assert again.model_dump() == archc.read("tf_efficientnet_b1", {"norm.momentum": 0.2}).model_dump()
    narrow = archc.read("efficientnet_b0", {"stem.channels": 16, "resolution": [224, 200]})
    again = archc.read(narrow, ["norm.momentum=0.2"])
    assert (again.stem.channels, again.resolution, again.norm.momentum) == (16, (224, 200), 0.2)


PUBLIC = ["archc", "archc.api", "archc.errors", "archc.request", "archc.monai"]


@pytest.mark.parametrize("name", PUBLIC)
def test_public_modules_say_what_they_export(name):
    module = importlib.import_module(name)
    assert all(hasattr(module, item) for item in module.__all__)
    own = {key for key, value in vars(module).items() if not key.startswith("_") and (inspect.isfunction(value) or inspect.isclass(value))
           and value.__module__ == name}
    assert own <= set(module.__all__), own - set(module.__all__)


def test_no_module_imports_another_modules_private_names():
    found = []
    for path in sorted(ARCHC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.ImportFrom) and node.level:  # archc's own modules
                found += [f"{path.relative_to(ARCHC)}:{node.lineno} {alias.name}" for alias in node.names if alias.name.startswith("_") and alias.name != "__version__"]
    assert found == []
