import subprocess
import sys
import time

import pytest

import archc
from archc.errors import SpecError
from archc.spec import parse_spec
from conftest import B0, FIXTURES, ROOT, run_archc

INVALID = FIXTURES / "invalid"

# Each invalid spec and the first line of the error it must produce (file:line: path: message).
EXPECTED = {
    "typo_key.yaml": "typo_key.yaml:3: stages[0].strde: unknown key 'strde' (did you mean 'stride'?); "
    "allowed: block, expand, channels, repeats, stride, kernel, se, se_gate, activation, residual",
    "stride_3.yaml": "stride_3.yaml:5: stages[1].stride: got 3, expected 1 or 2",
    "zero_channels.yaml": "zero_channels.yaml:2: stem.channels: got 0, expected greater than 0",
    "even_kernel.yaml": "even_kernel.yaml:6: stages[1].kernel: got 4, expected an odd kernel size",
    "wrong_type.yaml": "wrong_type.yaml:4: stages[0].repeats: got 'two', expected a valid integer",
    "empty.yaml": "empty.yaml:1: the file is empty; a spec is a mapping with at least 'name' and 'stages'",
    "not_mapping.yaml": "not_mapping.yaml:1: a spec is a mapping of keys (name, stages, ...), got a list",
    "unknown_block.yaml": "unknown_block.yaml:3: stages[0].block: got 'transformer', expected 'mbconv', 'fused_mbconv' or 'conv'",
    "phi_and_preset.yaml": "phi_and_preset.yaml:4: scaling: give phi or preset, not both",
    "duplicate_key.yaml": "duplicate_key.yaml:5: stages[0].stride: duplicate key 'stride' (first at line 4)",
    "python_tag.yaml": "python_tag.yaml:1: name: tag !!python/object/apply:os.system is not allowed; a spec holds plain values only",
    "bad_yaml.yaml": "bad_yaml.yaml:4: invalid YAML: expected ',' or '}', but got '<stream end>'",
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
        "    - [1, 16, 1, 1, 3]\n    - [6, 24, 2, 2, [3, 5]]\n"
    )
    rows = parse_spec(
        "name: t\nstages:\n  - {expand: 1, channels: 16, repeats: 1, stride: 1, kernel: 3}\n"
        "  - {expand: 6, channels: 24, repeats: 2, stride: 2, kernel: [3, 5]}\n"
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
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.stdout.strip() == "False False", result.stderr


def test_cli_validate_and_info_do_not_import_torch():
    code = (
        "import sys; from archc.cli import main\n"
        "assert main(['validate', 'efficientnet_b0']) == 0 and main(['info', 'efficientnet3d_b0']) == 0\n"
        "print('torch' in sys.modules, file=sys.stderr)"
    )
    result = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True)
    assert result.stderr.strip() == "False"


def test_missing_file_and_directory():
    with pytest.raises(SpecError, match="no such file or shipped spec; shipped specs: efficientnet3d_b0, efficientnet_b0, efficientnetv2_s, mobilenet_v2"):
        archc.read("nope.yaml")
    with pytest.raises(SpecError, match="is a directory"):
        archc.spec.load_spec(ROOT / "specs")
