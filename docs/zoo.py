"""Regenerate the gallery of shipped networks: python docs/zoo.py (writes docs/zoo.md; with Graphviz's `dot`, also
one stage diagram per shipped spec in docs/zoo/). Figures come from the Plan alone (archc.analyze), as `archc info`."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import archc
from archc.api import shipped_aliases
from archc.formatting import human

HERE = Path(__file__).resolve().parent
VOLUME = 96  # the 3D column: a 96x96x96 volume, 1 input channel, 2 classes (a CT or MRI classifier)


def rows() -> list[str]:
    lines = []
    aliases = shipped_aliases()
    for spec_name, spec_path in sorted(archc.builtin_specs().items()):
        names = [spec_name] + sorted(alias for alias, (path, _) in aliases.items() if path == spec_path and alias != spec_name)
        for name in names:
            written = archc.lower(name)
            if written.dims == 2:
                flat = archc.analyze(written)
                in_2d = f"{flat.params:,} | {human(flat.macs)} at {'x'.join(map(str, written.resolution))}"
            else:  # a volumetric spec (anisotropic kernels per axis): no 2D twin
                in_2d = "– | –"
            volume = archc.analyze(archc.lower(name, dims=3, in_channels=1, num_classes=2, resolution=VOLUME))
            lines.append(f"| `{name}` | [{spec_name}](zoo/{spec_name}.svg) | {in_2d} | {volume.params:,} | {human(volume.macs)} |")
    return lines


def page() -> str:
    return "\n".join([
        "# The zoo: every shipped network",
        "",
        "Each name loads with `archc.load(name)` or `archc build name` (`archc list` shows them all). Parameters and MACs",
        "(multiply-accumulates of convolutions and linear layers) are archc's own figures from the Plan (`archc info`);",
        "the 2D column is the network as timm builds it (3 input channels, 1000 classes, at timm's default input size),",
        "and its parameter counts equal timm 1.0.31's (tests/test_zoo.py and tests/test_family_*.py). The 3D column is",
        f"the same network with `--dims 3 --in-channels 1 --num-classes 2 --resolution {VOLUME}` (a {VOLUME}³ volume).",
        "The diagram link shows each spec's stages as written (its default preset).",
        "",
        "Regenerate with `python docs/zoo.py` (the diagrams need Graphviz's `dot`).",
        "",
        f"| name | spec (stage diagram) | parameters, 2D | MACs, 2D | parameters, 3D | MACs, 3D at {VOLUME}³ |",
        "|---|---|---|---|---|---|",
        *rows(),
        "",
    ])


def main() -> None:
    (HERE / "zoo.md").write_text(page())
    if shutil.which("dot") is None:
        print("no `dot`: docs/zoo.md written, diagrams left as they are", file=sys.stderr)
        return
    (HERE / "zoo").mkdir(exist_ok=True)
    for spec_name in sorted(archc.builtin_specs()):
        archc.render(spec_name, HERE / "zoo" / f"{spec_name}.svg", direction="LR")


if __name__ == "__main__":
    main()
