import os
import re
import xml.etree.ElementTree as ElementTree
from pathlib import Path

import pytest
import torch
from conftest import needs_dot, output_shapes
from reference_figures import PRESETS

import archc
from archc.cli import main
from archc.diagram import to_dot
from archc.errors import EmitError

GOLDEN = Path(__file__).parent / "golden"
NODE = re.compile(r'^\t+"?([\w.]+)"? \[label=')
EDGE = re.compile(r'^\t+"?([\w.]+)"? -> "?([\w.]+)"? \[(.*)\]$')


def nodes(graph) -> list[str]:
    return [m.group(1) for line in graph.body if (m := NODE.match(line))]


def edges(graph) -> list[tuple[str, str, str]]:
    return [m.groups() for line in graph.body if (m := EDGE.match(line))]


def clusters(graph) -> dict[str, list[str]]:
    """node -> the clusters it is drawn in, outermost first (read from the DOT body)."""
    inside, stack = {}, []
    for line in graph.body:
        if (m := re.match(r'^\t+subgraph "?(cluster_[\w.]+)"? \{$', line.rstrip("\n"))):
            stack.append(m.group(1))
        elif line.strip() == "}":
            stack.pop()
        elif (m := NODE.match(line)):
            inside[m.group(1)] = list(stack)
    return inside


def assert_skips_are_local(graph, plan) -> None:
    """Every dashed skip goes around its own block: from the node that feeds the block to the block's add
    node ("+", drawn in the block's stage), which takes the block's output and feeds the next block."""
    solid = [(s, t) for s, t, a in edges(graph) if "dashed" not in a]
    skips = [(s, t) for s, t, a in edges(graph) if "dashed" in a]
    feeds = {}  # node -> the nodes with a solid edge into it
    for source, target in solid:
        feeds.setdefault(target, []).append(source)
    placed = clusters(graph)
    labels = {m.group(1): line for line in graph.body if (m := NODE.match(line))}
    residual = [b for b in plan.blocks if b.residual]
    assert len(skips) == len(residual)
    order = [b.path for b in plan.blocks] + ["head"]
    for block in residual:
        add = f"{block.path}.add"
        [before] = feeds[block.path]
        assert (before, add) in skips, (block.path, [s for s in skips if s[1] == add or s[0] == before])
        assert feeds[add] == [block.path]  # the block's output is added, nothing else
        assert labels[add].startswith(f'\t\t"{add}" [label="+"')
        assert placed[add] == [f"cluster_{block.stage}"] == placed[block.path]
        following = order[order.index(block.path) + 1]
        assert feeds[following] == [add]  # the next block (or the head) reads the sum
    for source, target in skips:
        assert target.endswith(".add") and target != "head"
        stage = target.split(".")[1]
        assert source == "stem" or source.split(".")[1] in (stage, str(int(stage) - 1)), (source, target)


def label_shape(attributes: str) -> tuple[int, ...]:
    return tuple(int(n) for n in re.search(r"label=\"?([\d×]+)", attributes).group(1).split("×"))


@pytest.mark.parametrize("detail", ["stage", "block", "layer"])
def test_golden_dot(b0_spec, detail):
    source = archc.render(b0_spec, detail=detail).source
    golden = GOLDEN / f"efficientnet_b0.{detail}.dot"
    if os.environ.get("ARCHC_ACCEPT") == "1":
        golden.write_text(source)
    assert golden.exists(), f"no golden file; create it with: ARCHC_ACCEPT=1 python -m pytest {__file__}"
    assert source == golden.read_text(), (
        f"{golden.name} differs from the rendered diagram; if the change is intended, look at the diff and "
        f"accept it with: ARCHC_ACCEPT=1 python -m pytest tests/test_render.py"
    )


@pytest.mark.parametrize("preset, blocks, residual", [("b0", 16, 9), ("b7", 55, 48)])
def test_node_and_skip_counts(b0_spec, preset, blocks, residual):
    plan = archc.lower(b0_spec, preset=preset)
    assert sum(b.residual for b in plan.blocks) == residual  # every block but each stage's first
    stage = to_dot(plan, "stage")
    assert nodes(stage) == ["stem", *(f"stages.{i}" for i in range(7)), "head"]
    block = to_dot(plan, "block")
    block_nodes = [n for n in nodes(block) if n.startswith("stages.") and not n.endswith(".add")]
    add_nodes = [n for n in nodes(block) if n.endswith(".add")]
    assert block_nodes == [b.path for b in plan.blocks]
    assert add_nodes == [f"{b.path}.add" for b in plan.blocks if b.residual]
    drawn = [n for b in plan.blocks for n in ([b.path, f"{b.path}.add"] if b.residual else [b.path])]
    assert nodes(block) == ["stem", *drawn, "head"]  # each add node right after its block
    skips = [e for e in edges(block) if "style=dashed" in e[2]]
    assert len(skips) == residual
    assert len(edges(block)) == blocks + 1 + 2 * residual  # the chain to the head, and per skip block -> + and the skip
    assert_skips_are_local(block, plan)


def test_edge_shapes_equal_measured_shapes(b0_spec):
    model = archc.load(b0_spec, resolution=96, seed=0).eval()
    x = torch.randn(1, 3, 96, 96)
    measured = output_shapes(model, ["stem", *(f"stages.{i}" for i in range(len(model.stages)))], x)
    stage_edges = edges(to_dot(model.plan, "stage"))
    assert len(stage_edges) == 8
    for source, _, attributes in stage_edges:
        assert label_shape(attributes) == measured[source]
    block_measured = output_shapes(model, [block.path for block in model.plan.blocks], x)
    block_graph = to_dot(model.plan, "block")
    checked = 0
    for source, target, attributes in edges(block_graph):
        if "dashed" not in attributes and source.startswith("stages."):
            # a block's output, or the sum after it: both have the shape the block's module returns
            assert label_shape(attributes) == block_measured[source.removesuffix(".add")], (source, target)
            checked += 1
    assert checked == len(block_measured) + sum(b.residual for b in model.plan.blocks)
    assert_skips_are_local(block_graph, model.plan)


@pytest.mark.parametrize("dims, axes", [(1, 2), (2, 3), (3, 4)])
def test_shapes_have_one_axis_per_dimension_plus_channels(b0_spec, dims, axes):
    for _, _, attributes in edges(to_dot(archc.lower(b0_spec, dims=dims, resolution=64), "stage")):
        assert len(label_shape(attributes)) == axes


def test_title_and_colours(b0_spec):
    graph = archc.render(b0_spec, preset="b2", direction="LR")
    assert "rankdir=LR" in graph.source
    # B2's published parameters; its MACs at 260 as timm's efficientnet_b2 measures them (0.994G)
    assert f'label="efficientnet_b0   preset b2 (width 1.100, depth 1.200)   2D   {PRESETS["b2"][0]:,} parameters   994M MACs at 3×260×260"' in graph.source
    assert graph.source.count('fillcolor="#d5efe2"') == 7  # one colour for every MBConv stage


@needs_dot()
def test_svg_and_png_with_dot(b0_spec, tmp_path):
    svg, png = tmp_path / "b0.svg", tmp_path / "b0.png"
    archc.render(b0_spec, svg)
    archc.render(b0_spec, png, detail="block")
    root = ElementTree.parse(svg).getroot()
    text = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    for stage in ["stage 0: MBConv1 k3", "stage 1: MBConv6 k3 ×2", "stage 5: MBConv6 k5 ×4", "stage 6: MBConv6 k3"]:
        assert stage in text
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_missing_dot_is_explained(b0_spec, tmp_path, monkeypatch):
    monkeypatch.setenv("PATH", str(tmp_path))  # no `dot` anywhere
    with pytest.raises(EmitError, match=r"needs Graphviz's `dot` program.*apt-get install graphviz.*a \.dot file needs no binary"):
        archc.render(b0_spec, tmp_path / "b0.svg")
    assert not (tmp_path / "b0.svg").exists()
    archc.render(b0_spec, tmp_path / "b0.dot")  # DOT text needs no binary
    assert (tmp_path / "b0.dot").read_text().startswith("digraph efficientnet_b0 {")


def test_bad_outputs(b0_spec, tmp_path, capsys):
    with pytest.raises(archc.ArgumentError, match=r"unknown output format \.jpeg; use \.dot, \.svg, \.png, \.pdf"):
        archc.render(b0_spec, tmp_path / "b0.jpeg")
    with pytest.raises(SystemExit) as info:
        main(["render", "efficientnet_b0", "-o", str(tmp_path / "b0.gif")])
    assert info.value.code == 2 and "-o: unknown output format .gif" in capsys.readouterr().err
    assert main(["render", "efficientnet_b0", "-o", str(tmp_path / "missing" / "b0.svg")]) == 1
    assert "does not exist" in capsys.readouterr().err
    assert list(tmp_path.iterdir()) == []


def test_cli_prints_dot_without_output(capsys):
    assert main(["render", "efficientnet_b0", "--detail", "block", "--preset", "b1"]) == 0
    out = capsys.readouterr().out
    assert out.startswith("digraph efficientnet_b0 {") and '"stages.6.1"' in out


HOSTILE_NAMES = [
    "ends in a backslash\\",
    '<a> { x [URL=<javascript:alert(1)> image=</etc/passwd>] } digraph <b>',
    'quote" [URL="javascript:alert(1)"] x="',
    "<b>bold</b>",
]


@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_name_cannot_inject_dot(b0_spec, tmp_path, name):
    """The name is text in the picture, never DOT syntax: no extra nodes, attributes, links or images."""
    plain = archc.render(b0_spec, overrides={"name": "a plain name"}, resolution=64)
    graph = archc.render(b0_spec, tmp_path / "x.dot", overrides={"name": name}, resolution=64)
    assert nodes(graph) == nodes(plain)
    source = (tmp_path / "x.dot").read_text()
    # DOT's lexer: a quoted string runs to the first quote not escaped by a backslash. Outside them, the
    # hostile source has exactly the syntax of the plain one.
    outside = re.compile(r'"(?:[^"\\]|\\.)*"')
    assert outside.sub('""', source) == outside.sub('""', plain.source)


@needs_dot()
@pytest.mark.parametrize("name", HOSTILE_NAMES)
def test_hostile_name_gives_one_well_formed_svg(b0_spec, tmp_path, name):
    svg = tmp_path / "x.svg"
    archc.render(b0_spec, svg, overrides={"name": name}, resolution=64)
    root = ElementTree.parse(svg).getroot()  # one well-formed document, or this raises
    links = [e for e in root.iter() if e.tag.endswith("}a") or e.tag.endswith("}image")]
    assert links == []
    title = " ".join(t.text or "" for t in root.iter("{http://www.w3.org/2000/svg}text"))
    assert name in title  # drawn as the text it is


def test_control_characters_never_reach_the_dot_file(b0_spec, tmp_path):
    import dataclasses

    plan = dataclasses.replace(archc.lower(b0_spec, resolution=64), name="evil\x1b[31m\x00name")
    archc.render(plan, tmp_path / "x.dot")
    text = (tmp_path / "x.dot").read_bytes()
    assert b"\x1b" not in text and b"\x00" not in text and "evil\ufffd[31m\ufffdname".encode() in text


@pytest.mark.parametrize("name", ["a\x1bb", "nul\x00", "bell\x07", "rtl\u202eoverride"])
def test_names_are_printable_text(name):
    """A name is echoed by validate and build: a control or format character in it is refused up front."""
    with pytest.raises(archc.SpecError, match=r"name: got .*, expected printable text; character U\+[0-9A-F]{4}"):
        archc.read("efficientnet_b0", {"name": name})


class _CountedScans(tuple):
    """A report's list that counts the scans over it."""

    scans = 0

    def __iter__(self):
        type(self).scans += 1
        return super().__iter__()


@pytest.mark.parametrize("detail", ["stage", "block", "layer"])
def test_drawing_reads_the_report_by_index_not_by_a_scan_per_node(monkeypatch, detail):
    """Drawing n blocks takes a fixed number of passes over the report's figures, not one per node: 10,000 one-block
    stages drew in 53 s when every node scanned them, 2 s with the indexes (the lookups' cost, not the picture's)."""
    import dataclasses

    import archc.diagram

    analyze = archc.diagram.analyze
    scans = {}

    def counted(plan):
        report = analyze(plan)
        return dataclasses.replace(report, parts=_CountedScans(report.parts), rows=_CountedScans(report.rows), layers=_CountedScans(report.layers))

    monkeypatch.setattr(archc.diagram, "analyze", counted)
    for n in (20, 80):
        text = "name: many\nresolution: 32\nstages:\n  columns: [block, expand, channels]\n  rows:\n" + "    - [mbconv, 1, 16]\n" * n
        _CountedScans.scans = 0
        to_dot(archc.lower(archc.spec.parse_spec(text, "many.yaml")), detail=detail)
        scans[n] = _CountedScans.scans
    assert scans[80] == scans[20] < 20
