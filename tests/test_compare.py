"""`archc info A --compare B` and `archc render A --compare B -o diff.html` (archc/compare.py): stage by stage what
changed and B's figures minus A's, checked against the two networks' own `archc info --json`."""

import json

import pytest
from conftest import run_archc
from reference_figures import PRESETS
from test_html_view import BREAKING_NAMES, assert_one_document

import archc
from archc.analysis import analyze
from archc.cli import main
from archc.compare import compare, to_html


def info_json(*args) -> dict:
    out = run_archc("info", *args, "--json")
    assert out.returncode == 0, out.stderr
    return json.loads(out.stdout)


def test_a_preset_against_the_base_in_text_and_json():
    out = run_archc("info", "efficientnet_b0", "--compare", "efficientnet_b0 --preset b3")
    assert out.returncode == 0, out.stderr
    lines = out.stdout.splitlines()
    assert lines[:2] == ["A: efficientnet_b0: 2D, unscaled, input 3x224x224", "B: efficientnet_b0: 2D, preset b3 (width 1.200, depth 1.400), input 3x300x300"]
    # B3 minus B0: torchvision, timm and MONAI agree on both
    assert next(line for line in lines if line.startswith("total")).split()[3] == f"+{PRESETS['b3'][0] - PRESETS['b0'][0]:,}"
    stage3 = next(line for line in lines if line.startswith("3 "))
    assert "repeats 3 -> 5; channels 40->80 -> 48->96; SE 10 -> 12; output 80x14x14 -> 96x19x19" in stage3

    diff = json.loads(run_archc("info", "efficientnet_b0", "--compare", "efficientnet_b0 --preset b3", "--json").stdout)
    a, b = info_json("efficientnet_b0"), info_json("efficientnet_b0", "--preset", "b3")
    for row, ra, rb in zip(diff["rows"], a["stages"], b["stages"], strict=True):
        assert row["name"] == ra["name"] == rb["name"]
        assert [row[k] for k in ("params", "macs", "activations")] == [rb[k] - ra[k] for k in ("params", "macs", "activations")]
    assert diff["params"] == b["params"] - a["params"] == PRESETS["b3"][0] - PRESETS["b0"][0]


def test_an_override_changes_one_stage(tmp_path, capsys):
    assert main(["info", "efficientnet_b0", "--compare", "efficientnet_b0 --set stages[3].se=none", "--json"]) == 0
    diff = json.loads(capsys.readouterr().out)
    changes = {row["name"]: row["changes"] for row in diff["rows"]}
    assert changes == {name: (["SE 10 -> none"] if name == "3" else []) for name in changes}
    se = sum(layer["params"] for layer in info_json("efficientnet_b0")["layers"] if layer["path"].startswith("stages.3.") and ".se." in layer["path"])
    assert diff["params"] == -se == -44_450
    # B with no flags of its own takes A's: the same preset on both sides, so nothing changes.
    assert main(["info", "efficientnet_b0", "--preset", "b2", "--compare", "efficientnet_b0", "--json"]) == 0
    assert {json.dumps(row["changes"]) for row in json.loads(capsys.readouterr().out)["rows"]} == {"[]"}


def test_rows_only_one_network_has():
    full, encoder = archc.lower("efficientnet_b0"), archc.lower("efficientnet_b0", features_only=True)
    rows = {r.name: r.changes for r in compare(analyze(full), analyze(encoder)).rows}
    assert rows["head"] == rows["classifier"] == ("only in A",) and rows["6"] == ()


@pytest.mark.parametrize("name", BREAKING_NAMES)
def test_page_is_escaped_text(b0_spec, name):
    a = analyze(archc.lower(b0_spec, resolution=64))
    b = analyze(archc.lower(archc.read(b0_spec, {"name": name}), resolution=64))
    page = to_html(compare(a, b))
    assert_one_document(page)
    assert "<script" not in page and "<a " not in page and "<b>" not in page
    assert page.count("<tr") == 1 + len(a.rows) + 1  # header, one per stage row, total


def test_cli_page_and_usage_errors(tmp_path):
    out = run_archc("render", "efficientnet_b0", "--compare", "efficientnet_b0 --preset b1", "-o", tmp_path / "diff.html")
    assert out.returncode == 0 and "repeats 2 -&gt; 3" in (tmp_path / "diff.html").read_text(), out.stderr
    out = run_archc("render", "efficientnet_b0", "--compare", "efficientnet_b0", "-o", tmp_path / "diff.svg")
    assert out.returncode == 2 and "-o: a comparison is written as FILE.html" in out.stderr
    out = run_archc("info", "efficientnet_b0", "--compare", "efficientnet_b0 --bogus")
    assert out.returncode == 2 and "--compare: unknown --bogus; give a spec and, optionally, its own flags" in out.stderr
