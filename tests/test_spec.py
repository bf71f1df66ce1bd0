import re
import subprocess
import sys
import time
import typing

import pytest
from conftest import B0, FIXTURES, ROOT, run_archc, run_python

import archc
from archc.errors import SpecError
from archc.spec import parse_spec

INVALID = FIXTURES / "invalid"

# Each invalid spec and the first line of the error it must produce (file:line: path: message).
EXPECTED = {
    "typo_key.yaml": "typo_key.yaml:3: stages[0].strde: unknown key 'strde' (did you mean 'stride'?); "
    "allowed: block, expand, channels, repeats, continues, scale_depth, stride, kernel, mixed_kernels, start_kernel, mid, shortcut, stride_on, group_size, "
    "expand_groups, project_groups, expand_from, expand_conv, se, se_gate, activation, residual, layer_scale, grn",
    "stride_3.yaml": "stride_3.yaml:5: stages[1].stride: got 3, expected 1 or 2",
    "zero_channels.yaml": "zero_channels.yaml:2: stem.channels: got 0, expected greater than 0",
    "even_kernel.yaml": "even_kernel.yaml:6: stages[1].kernel: got 4, expected an odd kernel size",
    "wrong_type.yaml": "wrong_type.yaml:4: stages[0].repeats: got 'two', expected a valid integer",
    "empty.yaml": "empty.yaml:1: the file is empty; a spec is a mapping with at least 'name' and 'stages'",
    "not_mapping.yaml": "not_mapping.yaml:1: a spec is a mapping of keys (name, stages, ...), got a list",
    "unknown_block.yaml": "unknown_block.yaml:3: stages[0].block: got 'transformer', expected 'mbconv', 'fused_mbconv', 'conv', 'ds', 'dsa', "
    "'uib', 'convnext', 'downsample', 'basic' or 'bottleneck'",
    "phi_and_preset.yaml": "phi_and_preset.yaml:4: scaling: give phi or preset, not both",
    "duplicate_key.yaml": "duplicate_key.yaml:5: stages[0].stride: duplicate key 'stride' (first at line 4)",
    "python_tag.yaml": "python_tag.yaml:1: name: tag !!python/object/apply:os.system is not allowed; a spec holds plain values only",
    "bad_yaml.yaml": "bad_yaml.yaml:4:1: invalid YAML: expected ',' or '}', but got '<stream end>'; "
    "the { at line 3, column 5 is not closed: end it with }, and separate its items with commas",
    "short_row.yaml": "short_row.yaml:6: stages.rows[1]: got 2 values, expected 3 values (expand, channels, repeats)",
    "dims_4.yaml": "dims_4.yaml:2: dims: got 4, expected 1, 2 or 3",
    "kernel_axes.yaml": "kernel_axes.yaml:4: stages[0].kernel: got 3 values [1, 3, 3] for a 2D network; give one number or 2",
    "alias_bomb.yaml": "alias_bomb.yaml:2: e[7][8][8][8][8]: the document expands to more than 100,000 values (an alias/anchor bomb?)",
    "binary.yaml": "binary.yaml: not UTF-8 text (byte 0); a spec is a YAML text file",
    "control_character.yaml": "control_character.yaml:2: invalid character U+0001: control characters are not allowed in YAML",
}


def test_every_fixture_has_an_expectation():
    assert sorted(p.name for p in INVALID.glob("*.yaml")) == sorted(EXPECTED)


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_invalid_spec_message(name):
    with pytest.raises(archc.ArchcError) as info:
        archc.validate(INVALID / name)
    assert str(info.value).splitlines()[0] == f"{INVALID}/{EXPECTED[name]}"


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_cli_exits_1_without_traceback(name):
    result = run_archc("validate", f"tests/fixtures/invalid/{name}")
    assert result.returncode == 1
    assert result.stdout == ""
    assert result.stderr.splitlines()[0] == f"archc: error: tests/fixtures/invalid/{EXPECTED[name]}"
    assert "Traceback" not in result.stderr


def test_every_mistake_is_reported_in_one_pass():
    text = "name: x\nstem: {channels: -1}\nstages:\n  - {channels: 16, stride: 3}\n  - {channels: 0}\n"
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="x.yaml")
    assert str(info.value).splitlines() == [
        "x.yaml:2: stem.channels: got -1, expected greater than 0",
        "x.yaml:4: stages[0].stride: got 3, expected 1 or 2",
        "x.yaml:5: stages[1].channels: got 0, expected greater than 0",
    ]


def test_missing_key_points_at_its_parent():
    with pytest.raises(SpecError) as info:
        parse_spec("name: x\nstages:\n  - {expand: 6}\n", file="x.yaml")
    assert str(info.value) == "x.yaml:3: stages[0].channels: missing required key 'channels'"


def test_strict_numbers():
    for bad in ("'2'", "yes", "2.0"):
        with pytest.raises(SpecError, match=r"stages\[0\]\.stride"):
            parse_spec(f"name: x\nstages: [{{channels: 16, stride: {bad}}}]\n")


def test_table_form_equals_mapping_form():
    table = parse_spec(
        "name: t\nstages:\n  columns: [expand, channels, repeats, stride, kernel]\n  rows:\n"
        "    - [1, 16, 1, 1, 3]\n    - [6, 24, 2, 2, [1, 5]]\n"
    )
    rows = parse_spec(
        "name: t\nstages:\n  - {expand: 1, channels: 16, repeats: 1, stride: 1, kernel: 3}\n"
        "  - {expand: 6, channels: 24, repeats: 2, stride: 2, kernel: [1, 5]}\n"
    )
    assert table.model_dump() == rows.model_dump()


def test_table_cell_errors_point_at_the_cell_line():
    with pytest.raises(SpecError) as info:
        parse_spec("name: t\nstages:\n  columns: [channels, kernel]\n  rows:\n    - [16, 3]\n    - [24, [3, 4]]\n", file="t.yaml")
    assert str(info.value).startswith("t.yaml:6: stages[1].kernel[1]: got 4, expected an odd kernel size")


def test_unknown_column_gets_a_hint():
    with pytest.raises(SpecError) as info:
        parse_spec("name: t\nstages:\n  columns: [chanels]\n  rows: [[16]]\n", file="t.yaml")
    assert str(info.value).startswith("t.yaml:3: stages.columns[0]: unknown key 'chanels' (did you mean 'channels'?)")


def test_yaml_merge_keys_are_supported():
    spec = parse_spec("name: m\nstages:\n  - &row {channels: 16, expand: 6, kernel: 5}\n  - {<<: *row, channels: 24}\n")
    assert [(s.channels, s.expand, s.kernel) for s in spec.stages] == [(16, 6, (5,)), (24, 6, (5,))]


def test_alias_bomb_is_rejected_fast():
    start = time.perf_counter()
    with pytest.raises(SpecError, match="alias/anchor bomb"):
        archc.validate(INVALID / "alias_bomb.yaml")
    assert time.perf_counter() - start < 5  # a guard against a hang, not a benchmark


def test_shipped_b0_validates_and_reads_like_the_paper():
    spec = archc.validate(B0)
    assert [(s.expand, s.kernel[0], s.stride[0], s.channels, s.repeats) for s in spec.stages] == [
        # The paper's Table 1.
        (1, 3, 1, 16, 1), (6, 3, 2, 24, 2), (6, 5, 2, 40, 2), (6, 3, 2, 80, 3),
        (6, 5, 1, 112, 3), (6, 5, 2, 192, 4), (6, 3, 1, 320, 1),
    ]
    assert archc.read("efficientnet_b0").model_dump() == spec.model_dump()  # by its shipped name


def test_validate_does_not_import_torch():
    code = "import sys, archc; archc.validate('specs/efficientnet_b0.yaml'); print('torch' in sys.modules, 'graphviz' in sys.modules)"
    result = run_python(code)
    assert result.stdout.strip() == "False False", result.stderr


def test_cli_validate_and_info_do_not_import_torch():
    code = (
        "import sys; from archc.cli import main\n"
        "assert main(['validate', 'efficientnet_b0']) == 0 and main(['info', 'efficientnet3d_b0']) == 0\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    result = run_python(code)
    assert result.stderr.strip() == "False"


def test_missing_file_and_directory():
    with pytest.raises(SpecError, match=r"nope.yaml: no such file or shipped spec \(archc list shows every shipped name\)"):
        archc.read("nope.yaml")
    with pytest.raises(SpecError, match="no such file or shipped spec; did you mean efficientnet_b3 or "):
        archc.read("efficientnet_b33")
    with pytest.raises(SpecError, match="is a directory"):
        archc.spec.load_spec(ROOT / "specs")


# --------------------------------------------------------------------------- hostile input: bounded work, one-line errors


def _validate_cli(path, *args, cwd=ROOT):
    """``archc validate`` in a fresh process: exit code and the first line of stderr."""
    result = run_archc("validate", path, *args, cwd=cwd)
    assert "Traceback" not in result.stderr, result.stderr
    return result.returncode, (result.stderr.splitlines() or [""])[0]


def test_merge_key_bomb_is_counted_while_merging(tmp_path):
    # Each level merges the one inside it twice; PyYAML's flatten_mapping would build 2**27 pairs first.
    text = "&l0 {a: 1}"
    for i in range(1, 28):
        text = f"&l{i} {{<<: [{text}, *l{i - 1}]}}"
    path = tmp_path / "merge_bomb.yaml"
    path.write_text(f"x: {text}\n")
    code, line = _validate_cli(path)
    assert code == 1
    assert line.startswith(f"archc: error: {path}:") and line.endswith("the document expands to more than 100,000 values (an alias/anchor bomb?)")


def test_merge_keys_keep_their_precedence():
    # Explicit keys win over merged ones; in a list of merges, the first one wins.
    spec = parse_spec(
        "name: m\nstages:\n  - &a {channels: 16, expand: 1}\n  - &b {channels: 24, kernel: 5, expand: 4}\n"
        "  - {<<: [*a, *b], repeats: 2}\n  - {<<: *b, channels: 40}\n"
    )
    assert [(s.channels, s.expand, s.kernel, s.repeats) for s in spec.stages][2:] == [(16, 1, (5,), 2), (40, 4, (5,), 1)]
    with pytest.raises(SpecError, match=r"t.yaml:3: stages\[0\]: a merge key \(<<\) takes a mapping or a list of mappings"):
        parse_spec("name: m\nstages:\n  - {<<: 3, channels: 16}\n", file="t.yaml")


def test_a_huge_flow_list_is_refused_while_composing(tmp_path):
    path = tmp_path / "flow.yaml"
    path.write_text("name: x\nstages: [" + "1," * 400_000 + "1]\n")  # under the byte limit, far over the value limit
    code, line = _validate_cli(path)
    assert (code, line) == (1, f"archc: error: {path}:2: the document expands to more than 100,000 values (an alias/anchor bomb?)")


def test_a_file_past_the_byte_limit_is_refused(tmp_path):
    path = tmp_path / "big.yaml"
    path.write_text("# " + "x" * (2 * 1024 * 1024) + "\nname: x\n")
    code, line = _validate_cli(path)
    assert (code, line) == (1, f"archc: error: {path}: larger than 1,048,576 bytes, the most a spec file may be")


def test_presets_are_limited_and_validate_work_is_bounded(tmp_path):
    presets = "".join(f"    p{i}: {{width: 1.0, depth: 3000}}\n" for i in range(1000))
    path = tmp_path / "presets.yaml"
    path.write_text(f"name: x\nstages:\n  - {{channels: 16, repeats: 3}}\nscaling:\n  presets:\n{presets}")
    code, line = _validate_cli(path)
    assert (code, line) == (1, f"archc: error: {path}:5: scaling.presets: 1000 presets; a spec may define at most 100")
    # Under the preset limit, each preset's blocks still count against one budget for the whole check.
    few = "".join(f"    p{i}: {{width: 1.0, depth: 1000}}\n" for i in range(20))  # 9,000 blocks each
    path.write_text(f"name: x\nstages:\n  - {{channels: 16, repeats: 9}}\nscaling:\n  presets:\n{few}")
    code, line = _validate_cli(path)
    assert code == 1
    assert line.endswith("scaling.presets.p5: validating every preset would lower more than 50,000 blocks in all; archc stops there")


@pytest.mark.parametrize("kind", ["device", "fifo", "pipe", "symlink"])
def test_spec_readers_refuse_what_is_not_a_regular_file(tmp_path, kind):
    import os

    if kind == "device":
        path = "/dev/zero"
    elif kind == "fifo":
        path = tmp_path / "spec.yaml"
        os.mkfifo(path)  # nobody writes: opening it normally would block forever
    elif kind == "symlink":
        path = tmp_path / "spec.yaml"
        path.symlink_to("/dev/zero")
    if kind == "pipe":
        code = "from archc.cli import main; import sys; sys.exit(main(['validate', '/dev/stdin']))"
        result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, stdin=subprocess.Popen(["yes"], stdout=subprocess.PIPE).stdout,
                                capture_output=False, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60)
        code, line = result.returncode, result.stderr.splitlines()[0]
        path = "/dev/stdin"
    else:
        code, line = _validate_cli(path)
    assert code == 1
    assert line.startswith(f"archc: error: {path}: ") and "not a regular file" in line, line


@pytest.mark.parametrize(
    "text, message",
    [
        ("[" * 5000 + "]" * 5000, "x.yaml:1: nested more than 64 levels deep"),
        ("".join(f"{' ' * i}a:\n" for i in range(600)), "x.yaml:65: nested more than 64 levels deep"),
    ],
)
def test_deep_nesting_is_refused_before_recursion(text, message):
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="x.yaml")
    assert str(info.value) == message


def test_deep_override_value_is_one_line():
    with pytest.raises(SpecError) as info:
        parse_spec(B0.read_text(), file="b0.yaml", overrides=["name=" + "[" * 3000])
    assert str(info.value) == "--set name=" + "[" * 67 + "...: nested more than 64 levels deep"


@pytest.mark.parametrize(
    "setting, message",
    [
        ("stem.channels=" + "1" * 5000, "an integer of 5000 digits; numbers in a spec have at most 100"),
        ("stem.channels=" + "9" * 50, "stem.channels: got " + "9" * 50 + ", expected less than or equal to 1000000"),
        ("scaling.alpha=.inf", "scaling.alpha: got inf, expected a finite number"),
        ("scaling.beta=1e400", "scaling.beta: got inf, expected a finite number"),
        ("scaling.presets.b3.width=1e308", "scaling.presets.b3.width: got 1e+308, expected less than or equal to 1000"),
        ("scaling.presets.b3.depth=.inf", "scaling.presets.b3.depth: got inf, expected a finite number"),
        ("resolution=1e400", "resolution: got inf, expected a valid integer"),
        ("resolution=10000000", "resolution: got 10000000, expected less than or equal to 1000000"),
    ],
)
def test_numbers_out_of_range_name_their_field(setting, message):
    with pytest.raises(SpecError) as info:
        archc.validate(B0, [setting])
    text = str(info.value)
    assert "\n" not in text
    assert text.endswith(message)
    assert text.startswith(f"--set {setting}"[:40])  # the override is named, not the spec file
    assert len(text) < 300


def test_a_long_integer_in_a_file_is_refused(tmp_path):
    with pytest.raises(SpecError) as info:
        parse_spec("name: x\nstages:\n  - {channels: " + "1" * 5000 + "}\n", file="x.yaml")
    assert str(info.value) == "x.yaml:3: stages[0].channels: an integer of 5000 digits; numbers in a spec have at most 100"


def test_phi_that_overflows_a_multiplier_is_a_scaling_error():
    with pytest.raises(archc.errors.ScalingError) as info:
        archc.lower(B0, ["scaling.alpha=1", "scaling.gamma=1"], phi=7440)
    assert str(info.value) == "phi=7440.0 gives a width multiplier beta**phi = 1.1**7440.0 over 1000; is phi a typo?"


@pytest.mark.parametrize(
    "text, value",
    [
        ("040", 40),  # YAML 1.1: octal 32
        ("0o17", 15),
        ("0x1F", 31),
        ("-12", -12),
        ("1e-5", 1e-5),  # YAML 1.1: the string '1e-5'
        ("1.0e-3", 1e-3),
        ("-.5", -0.5),
        ("3:44", "3:44"),  # YAML 1.1: 224 (base 60)
        ("1_000", "1_000"),
        ("yes", "yes"),  # YAML 1.1: True
        ("off", "off"),
        ("true", True),
        ("False", False),
        ("~", None),
        ("2024-01-01", "2024-01-01"),  # YAML 1.1: a date
    ],
)
def test_scalars_are_read_as_yaml_1_2(text, value):
    from archc.yaml_source import read_yaml

    got, _ = read_yaml(f"v: {text}\n", "x.yaml")
    assert got == {"v": value} and type(got["v"]) is type(value)


def test_yaml_1_1_forms_fail_validation_clearly():
    with pytest.raises(SpecError) as info:
        parse_spec("name: x\nstages:\n  - {channels: 3:44, residual: yes}\n", file="x.yaml")
    assert str(info.value).splitlines() == [
        "x.yaml:3: stages[0].channels: got '3:44', expected a valid integer",
        "x.yaml:3: stages[0].residual: got 'yes', expected a valid boolean",
    ]
    assert parse_spec("name: x\nnorm: {eps: 1e-3}\nstages: [{channels: 16}]\n").norm.eps == 1e-3
    with pytest.raises(SpecError, match="x.yaml:1: key True is not a name"):
        parse_spec("true: 1\n", file="x.yaml")
    with pytest.raises(SpecError, match="unknown key 'on'"):
        parse_spec("name: x\non: 1\nstages: [{channels: 16}]\n", file="x.yaml")  # 1.1 read it as True


def test_an_error_inside_a_deep_override_names_the_override():
    with pytest.raises(SpecError) as info:
        archc.validate(B0, ["a.b.c.d=1"])
    assert str(info.value).startswith("--set a.b.c.d=1: a: unknown key 'a'")
    with pytest.raises(SpecError) as info:
        archc.validate(B0, ["scaling.presets.b9.width=2"])
    assert str(info.value) == "--set scaling.presets.b9.width=2: scaling.presets.b9.depth: missing required key 'depth'"


def test_a_folder_does_not_hide_a_shipped_spec(tmp_path, monkeypatch, capsys):
    import shutil

    from archc.cli import main

    monkeypatch.chdir(tmp_path)  # in-process: a fresh `python -m archc` here would import another archc
    (tmp_path / "efficientnet_b0").mkdir()
    assert main(["validate", "efficientnet_b0"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("efficientnet_b0: ok (efficientnet_b0,")
    assert err.startswith("note: efficientnet_b0 is a folder here; using the shipped spec (")
    (tmp_path / "mine").mkdir()
    assert main(["validate", "mine"]) == 1
    assert capsys.readouterr().err == "archc: error: mine: is a directory, not a spec file\n"
    # A file of a shipped spec's name is used, and the output says so.
    shutil.rmtree(tmp_path / "efficientnet_b0")
    shutil.copy(ROOT / "specs" / "mobilenet_v2.yaml", tmp_path / "efficientnet_b0")
    assert main(["validate", "efficientnet_b0"]) == 0
    out, err = capsys.readouterr()
    assert "(mobilenet_v2," in out
    assert err == "note: efficientnet_b0 is a file here and the name of a shipped spec; using the file (./efficientnet_b0)\n"
    # The same for another name of a shipped network: the file is read as written, without the alias's preset.
    shutil.copy(ROOT / "specs" / "mobilenet_v2.yaml", tmp_path / "efficientnet_b3")
    mine = archc.read("efficientnet_b3")
    assert (mine.name, mine.scaling.preset) == ("mobilenet_v2", None)
    (tmp_path / "efficientnet_b3").unlink()
    (tmp_path / "efficientnet_b3").mkdir()
    shipped = archc.read("efficientnet_b3")
    assert (shipped.name, shipped.scaling.preset) == ("efficientnet_b3", "b3")


@pytest.mark.parametrize("text, message", [
    ("name: x\nstem: {scale: 'no'}\nstages: [{channels: 16}]\n", "x.yaml:2: stem.scale: got 'no', expected a valid boolean"),
    ("name: x\nstem: {scale: 0}\nstages: [{channels: 16}]\n", "x.yaml:2: stem.scale: got 0, expected a valid boolean"),
    ("name: x\nstages:\n  - {channels: 16, scale_depth: 'off'}\n", "x.yaml:3: stages[0].scale_depth: got 'off', expected a valid boolean"),
    ("name: x\nstages:\n  columns: [channels, scale_depth]\n  rows:\n    - [16, 1]\n",
     "x.yaml:5: stages[0].scale_depth: got 1, expected a valid boolean"),
])
def test_fixed_stem_and_depth_exempt_rows_take_only_true_or_false(text, message):
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="x.yaml")
    assert str(info.value).splitlines()[0] == message


def _se_layers(plan, stage: int) -> int:
    return sum(type(layer).__name__ == "SqueezeExcite" for block in plan.stages[stage].blocks for layer in block.layers)


@pytest.mark.parametrize("overrides", [
    {"stages[3].se": None},  # the Python API's None
    ["stages[3].se=null"],  # --set
    ["stages[3].se=~"],
    ["stages[3].se=none"],
    ["stages[3].se=0"],
])
def test_a_null_row_se_turns_se_off_like_none(overrides):
    """None, null and ~ mean what they mean in a file: no SE for the row (the network's SE is kept by leaving the key out)."""
    plan = archc.lower(B0, overrides)
    assert _se_layers(plan, 3) == 0
    assert _se_layers(plan, 2) == len(plan.stages[2].blocks) == 2  # the other rows keep the network's SE
    assert _se_layers(archc.lower(B0), 3) == 3


@pytest.mark.parametrize("value", ["null", "~", "none", "0"])
def test_a_null_row_se_in_a_file_is_no_se(value):
    text = f"name: x\nstages:\n  - {{channels: 16, se: {value}}}\n  - {{channels: 24}}\n"
    plan = archc.lower(parse_spec(text, file="x.yaml"))
    assert (_se_layers(plan, 0), _se_layers(plan, 1)) == (0, 1)


def test_every_field_that_takes_null_says_what_null_means():
    """The reference leaves no field's null to guesswork: each optional field's description names it."""
    from archc.reference import _MODELS

    silent = [f"{model.__name__}.{name}" for model in _MODELS for name, field in model.model_fields.items()
              if type(None) in typing.get_args(field.annotation) and "null" not in (field.description or "")]
    assert silent == []


def test_decoder_blocks_count_against_the_block_limit():
    """decoder.repeats is bounded like depth: the spec refuses more than the limit per level, and the network's total
    (encoder and decoder) is checked before any decoder block is made."""
    unet = ["decoder.type=unet"]
    with pytest.raises(SpecError) as info:
        archc.validate("efficientnet_b0", [*unet, "decoder.repeats=1000000"])
    assert str(info.value) == "--set decoder.repeats=1000000: decoder.repeats: got 1000000, expected less than or equal to 10000"
    with pytest.raises(archc.errors.LoweringError) as info:
        archc.validate("efficientnet_b0", [*unet, "decoder.repeats=2000"])
    assert str(info.value) == ("--set decoder.repeats=2000: decoder.repeats: got 2,000 blocks at each of the decoder's 5 levels: "
                               "10,016 blocks with the encoder's; archc stops at 10,000")
    assert len(archc.lower("efficientnet_b0", [*unet, "decoder.repeats=1996"]).decoder.levels[0].blocks) == 1996  # 9,996 blocks


@pytest.mark.parametrize("text, message", [
    ("name: x\nstages: [{channels: 16}\n", "x.yaml:3:1: invalid YAML: expected ',' or ']', but got '<stream end>'; "
     "the [ at line 2, column 9 is not closed: end it with ], and separate its items with commas"),
    ("name: a: b\nstages: []\n", "x.yaml:1:8: invalid YAML: mapping values are not allowed here; a ':' where a value goes: "
     "quote a value that holds ': ', or look for a key without its ':' on the line above"),
    ("name: x\nstages:\n\t- {channels: 16}\n", "x.yaml:3:1: invalid YAML: found character '\\t' that cannot start any token; "
     "YAML indents with spaces, not tabs"),
    ("name: x\nstages:\n  - channels: 16\n   repeats: 2\n", "x.yaml:4:4: invalid YAML: expected <block end>, but found "
     "'<block mapping start>'; this line is indented differently from the block it belongs to (from line 3, column 3): align it with its siblings"),
    ("name: 'x\nstages: []\n", "x.yaml:3:1: invalid YAML: found unexpected end of stream; the quote at line 1, column 7 is not closed"),
    ("name: *a\n", "x.yaml:1:7: invalid YAML: found undefined alias 'a'; an alias (*name) needs an anchor (&name) earlier in the file"),
])
def test_yaml_syntax_errors_give_line_column_and_a_hint(text, message):
    with pytest.raises(SpecError) as info:
        parse_spec(text, file="x.yaml")
    assert str(info.value) == message and (info.value.line, info.value.column) == tuple(map(int, message.split(":")[1:3]))


@pytest.mark.parametrize("dims, kernel, advice", [
    (3, "[3, 5]", "write one size per axis (3D: depth, height, width), like 3x3x5, for one kernel, or mixed_kernels: [3, 5]"),
    (2, "[3, 5]", "write one size per axis (2D: height, width), like 3x5, for one kernel, or mixed_kernels: [3, 5]"),
    (2, "[3, 5, 7]", "a 2D kernel has 2 sizes, so write mixed_kernels: [3, 5, 7] for depthwise kernels over channel groups (MixNet), "
                     "or one size per axis (like 5x7)"),
    (1, "[3, 5]", "is ambiguous in 1D: write one size (like 3) for one kernel, or mixed_kernels: [3, 5]"),
])
def test_an_ambiguous_kernel_offers_spellings_valid_for_the_dims(dims, kernel, advice):
    text = f"name: x\ndims: {dims}\nstages: [{{channels: 16, kernel: {kernel}}}]\n"
    with pytest.raises(SpecError, match=re.escape(advice)):
        parse_spec(text, file="x.yaml")
    like = advice.partition("like ")[2].partition(",")[0].rstrip(")")
    if "x" in like:  # the suggested spelling is itself valid for these dims
        parse_spec(text.replace(kernel, like), file="x.yaml")


@pytest.mark.parametrize("setting, message", [
    ("kernel: [3, 3, 3, 3]", "stages[0].kernel: got [3, 3, 3, 3], expected one number for every axis, or one per axis (at most 3: depth, height, width)"),
    ("stride: []", "stages[0].stride: got [], expected one number for every axis, or one per axis (at most 3: depth, height, width)"),
    ("mixed_kernels: [3]", "stages[0].mixed_kernels: got [3], expected at least 2 values"),
])
def test_list_lengths_are_explained_in_the_specs_words(setting, message):
    with pytest.raises(SpecError) as info:
        parse_spec(f"name: x\nstages: [{{channels: 16, {setting}}}]\n", file="x.yaml")
    assert str(info.value) == f"x.yaml:2: {message}"


def test_a_saved_models_none_override_reads_back_as_null(tmp_path):
    """A model built with overrides={"stages[3].se": None} is saved with that None; read back, it is null again
    (no SE), not the text "None"."""
    model = archc.load(B0, overrides={"stages[3].se": None}, seed=0)
    path = tmp_path / "m.safetensors"
    archc.save(model, path)
    assert archc.read(path).stages[3].se == 0.0
    assert archc.read(path, {"stages[2].se": None}).stages[2].se == 0.0
    assert _se_layers(archc.lower(path), 3) == 0
