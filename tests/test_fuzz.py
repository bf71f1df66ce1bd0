"""Fuzzing: generated and mutated specs have two possible outcomes, a model or an archc error with a location.

CI runs the short profile (over 500 specs in all). The long one is

    ARCHC_FUZZ=long python -m pytest tests/test_fuzz.py

(see docs/reliability.md for a recorded run).
"""

import copy
import os
from pathlib import Path

import yaml
from conftest import TINY3D
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import archc
from archc.emit.network import instantiate
from archc.spec import parse_spec

LONG = os.environ.get("ARCHC_FUZZ") == "long"
SHIPPED = {p.stem: yaml.safe_load(p.read_text()) for p in (Path(__file__).parent.parent / "specs").glob("*.yaml")}


def profile(examples: int):
    return settings(max_examples=examples * (20 if LONG else 1), deadline=None, derandomize=not LONG,
                    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large])


def compile_or_explain(text: str, dims: int | None = None) -> None:
    """The property: a Plan whose module can be laid out, or an ArchcError that says where."""
    try:
        spec = parse_spec(text, file="fuzz.yaml")
        plan = archc.lower(spec, dims=dims)
        report = archc.analyze(plan)
        model = instantiate(plan)  # on the meta device: every layer is made, no memory is used
        assert sum(p.numel() for p in model.parameters()) == report.params
    except archc.ArchcError as exc:
        assert exc.file or exc.line or exc.path, f"error without a location: {exc!r}"
        assert str(exc).strip()


junk = st.one_of(st.none(), st.booleans(), st.integers(-3, 9), st.floats(allow_nan=True, allow_infinity=True),
                 st.text(max_size=6), st.lists(st.integers(-1, 4), max_size=4), st.dictionaries(st.text(max_size=3), st.integers(), max_size=2))


def maybe(valid):
    return st.one_of(valid, valid, valid, junk)  # mostly valid, sometimes anything


def with_unknown_key(mapping):
    """Now and then one key the spec does not know."""
    return st.builds(lambda d, extra: {**d, **extra}, mapping, st.dictionaries(st.text(min_size=1, max_size=8), junk, max_size=1))


stage = with_unknown_key(st.fixed_dictionaries(
    {"channels": maybe(st.integers(1, 48))},
    optional={
        "block": maybe(st.sampled_from(["mbconv", "fused_mbconv", "conv", "ds", "dsa", "uib"])),
        "expand": maybe(st.one_of(st.integers(1, 6), st.sampled_from([2.5, 3.67, 0.5]))),
        "continues": maybe(st.booleans()),
        "mixed_kernels": maybe(st.lists(st.sampled_from([1, 3, 5, 7]), min_size=1, max_size=4)),
        "start_kernel": maybe(st.sampled_from([3, 5])),
        "group_size": maybe(st.sampled_from([1, 3, 8])),
        "expand_groups": maybe(st.integers(1, 3)),
        "expand_from": maybe(st.integers(1, 32)),
        "expand_conv": maybe(st.booleans()),
        "layer_scale": maybe(st.sampled_from([1e-5, 1.0])),
        "repeats": maybe(st.integers(1, 3)),
        "stride": maybe(st.one_of(st.sampled_from([1, 2]), st.lists(st.sampled_from([1, 2]), min_size=1, max_size=3))),
        "kernel": maybe(st.one_of(st.sampled_from([1, 3, 5]), st.lists(st.sampled_from([1, 3, 5]), min_size=1, max_size=3))),
        "se": maybe(st.one_of(st.floats(0, 1), st.just("none"))),
        "activation": maybe(st.sampled_from(["silu", "relu", "gelu", "hardswish"])),
        "residual": maybe(st.booleans()),
    },
))
spec_dict = st.fixed_dictionaries(
    {"name": maybe(st.text(min_size=1, max_size=8)), "stages": maybe(st.lists(stage, min_size=1, max_size=4))},
    optional={
        "dims": maybe(st.sampled_from([1, 2, 3])),
        "in_channels": maybe(st.integers(1, 4)),
        "num_classes": maybe(st.integers(0, 10)),
        "resolution": maybe(st.one_of(st.integers(4, 40), st.lists(st.integers(4, 40), min_size=1, max_size=3))),
        "padding": maybe(st.sampled_from(["symmetric", "same"])),
        "norm": maybe(st.fixed_dictionaries({"type": maybe(st.sampled_from(["batch", "group", "instance", "layer"]))},
                                            optional={"groups": maybe(st.sampled_from([1, 2, 4, 8, 3]))})),
        "stem": maybe(st.fixed_dictionaries({}, optional={"channels": maybe(st.integers(1, 32)), "stride": maybe(st.sampled_from([1, 2]))})),
        "head": maybe(st.fixed_dictionaries({}, optional={"channels": maybe(st.integers(1, 64)), "scale": maybe(st.sampled_from([True, False, "up"])),
                                                          "type": maybe(st.sampled_from(["conv", "efficient", "pool"])), "norm": maybe(st.booleans())})),
        "se": maybe(st.fixed_dictionaries({}, optional={"ratio": maybe(st.floats(0, 1)), "placement": maybe(st.sampled_from(["after_depthwise", "after_project", "none"]))})),
        "scaling": maybe(st.fixed_dictionaries({}, optional={"phi": maybe(st.floats(-2, 3)), "divisor": maybe(st.integers(1, 8))})),
        "stochastic_depth": maybe(st.floats(0, 0.9)),
    },
)


@profile(300)
@given(spec_dict, st.one_of(st.none(), st.sampled_from([1, 2, 3])))
def test_generated_specs(data, dims):
    compile_or_explain(yaml.safe_dump(data, sort_keys=False), dims)


def _paths(value, path=()):
    yield path
    if isinstance(value, dict):
        for key, child in value.items():
            yield from _paths(child, path + (key,))
    elif isinstance(value, list):
        for index, child in enumerate(value):
            yield from _paths(child, path + (index,))


@profile(250)
@given(st.sampled_from(sorted(SHIPPED)), st.data())
def test_mutated_shipped_specs(name, data):
    spec = copy.deepcopy(SHIPPED[name])
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from([p for p in _paths(spec) if p]))
        parent = spec
        for part in path[:-1]:
            parent = parent[part]
        action = data.draw(st.sampled_from(["replace", "delete", "insert"]))
        if action == "replace":
            parent[path[-1]] = data.draw(junk)
        elif action == "delete":
            del parent[path[-1]]
        elif isinstance(parent, dict):
            parent[data.draw(st.text(min_size=1, max_size=6))] = data.draw(junk)
        if not isinstance(spec, dict) or not any(True for _ in _paths(spec) if _):
            break
    compile_or_explain(yaml.safe_dump(spec, sort_keys=False))


@profile(60)
@given(st.sampled_from(sorted(SHIPPED)), st.data())
def test_corrupted_spec_text(name, data):
    text = bytearray((Path(__file__).parent.parent / "specs" / f"{name}.yaml").read_bytes())
    for _ in range(data.draw(st.integers(1, 4))):
        text[data.draw(st.integers(0, len(text) - 1))] = data.draw(st.integers(0, 255))
    compile_or_explain(bytes(text).decode("latin-1"))
    try:  # and as raw bytes, which may not be UTF-8 at all
        archc.spec.parse_spec(bytes(text), file="fuzz.yaml")
    except archc.ArchcError as exc:
        assert exc.file == "fuzz.yaml"


# Hostile values: nesting far past the limit, numbers past any size, in any place of a shipped spec.
hostile = st.one_of(
    st.integers(65, 6000).map(lambda n: "[" * n + "]" * n),
    st.integers(65, 800).map(lambda n: "{a: " * n + "1" + "}" * n),
    st.integers(20, 6000).map(lambda n: "9" * n),
    st.sampled_from([".inf", "-.inf", ".nan", "1e400", "-1e400", "1e308", "0x" + "f" * 300, "0o" + "7" * 300, "040", "3:44", "1e-5"]),
)


@profile(120)
@given(st.sampled_from(sorted(SHIPPED)), st.data())
def test_hostile_values_in_shipped_specs(name, data):
    spec = copy.deepcopy(SHIPPED[name])
    path = data.draw(st.sampled_from([p for p in _paths(spec) if p]))
    parent = spec
    for part in path[:-1]:
        parent = parent[part]
    parent[path[-1]] = "HOSTILE-VALUE"
    text = yaml.safe_dump(spec, sort_keys=False, width=10_000).replace("HOSTILE-VALUE", data.draw(hostile), 1)
    compile_or_explain(text)


_SAVED = {}


def _saved_tiny() -> bytes:
    """A small saved model, made once."""
    if not _SAVED:
        import tempfile

        model = archc.load(TINY3D, seed=0)
        with tempfile.TemporaryDirectory() as folder:
            path = Path(folder) / "tiny.safetensors"
            archc.save(model, path)
            _SAVED["bytes"] = path.read_bytes()
            _SAVED["state"] = model.state_dict()
    return _SAVED["bytes"]


@profile(150)
@given(st.data())
def test_crafted_checkpoints(data):
    """A changed file loads as exactly the model that was saved, or is refused with a CheckpointError; never
    anything else (the digest covers every byte that decides what is loaded)."""
    import struct
    import tempfile

    blob = bytearray(_saved_tiny())
    (size,) = struct.unpack("<Q", blob[:8])
    for _ in range(data.draw(st.integers(1, 4))):
        where = data.draw(st.one_of(st.integers(0, 7 + size), st.integers(0, len(blob) - 1)))  # mostly the header
        blob[where] = data.draw(st.integers(0, 255))
    if data.draw(st.booleans()):
        blob = blob[: data.draw(st.integers(0, len(blob)))]
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "crafted.safetensors"
        path.write_bytes(bytes(blob))
        try:
            model = archc.load(str(path))
        except archc.CheckpointError as exc:
            assert exc.file == str(path) and str(exc).strip()
            return
    assert bytes(blob) == _saved_tiny()  # only an unchanged file loads
    assert all(value.equal(_SAVED["state"][key]) for key, value in model.state_dict().items())
