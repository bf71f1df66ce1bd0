"""archc's emitted models against the implementations users would pick instead, measured as ratios.

    python benchmarks/peers.py              # writes docs/performance.md and docs/performance.png
    python benchmarks/peers.py --quick      # fewer repetitions, prints only

Each ratio is archc / peer. The two are timed alternately in the same process (a, b, a, b, ...) and the
median of the per-pair ratios is reported, so drift in a shared machine's speed cancels. Peak memory is the
growth of a fresh process's peak resident set over one training step, each variant in its own process.
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import subprocess
import sys
import time
from pathlib import Path

import torch

import archc

ROOT = Path(__file__).resolve().parent.parent


def ratio(fa, fb, repeats: int) -> float:
    fa(), fb()  # warm-up: allocator, oneDNN primitives
    pairs = []
    for _ in range(repeats):
        start = time.perf_counter()
        fa()
        a = time.perf_counter() - start
        start = time.perf_counter()
        fb()
        pairs.append(a / (time.perf_counter() - start))
    return statistics.median(pairs)


def monai_b0(dims: int, in_channels: int, num_classes: int):
    from monai.networks.nets import EfficientNetBN

    return EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=dims, in_channels=in_channels, num_classes=num_classes)


def peers_2d():
    yield "MONAI", monai_b0(2, 3, 1000)
    try:
        from efficientnet_pytorch import EfficientNet

        yield "efficientnet-pytorch", EfficientNet.from_name("efficientnet-b0")
    except ImportError:
        pass


def train_step(model, x, y):
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)

    def step():
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()

    return step


def inference(model, x):
    def run():
        with torch.inference_mode():
            model(x)

    return run


def speed(repeats: int) -> list[tuple[str, str, float]]:
    rows = []
    torch.manual_seed(0)
    # 2D b0, batch 8 at 224^2.
    x, y = torch.randn(8, 3, 224, 224), torch.randint(0, 1000, (8,))
    ours = archc.load("efficientnet_b0", seed=0)
    fused = archc.load("efficientnet_b0", seed=0, fuse=True)
    for name, peer in peers_2d():
        ours.eval(), peer.eval()
        rows.append(("2D b0 inference, batch 8, 224²", name, ratio(inference(ours, x), inference(peer, x), repeats)))
        rows.append(("2D b0 inference, fused BN", name, ratio(inference(fused, x), inference(peer, x), repeats)))
        ours.train(), peer.train()
        rows.append(("2D b0 training step", name, ratio(train_step(ours, x, y), train_step(peer, x, y), max(3, repeats // 2))))
        cl = archc.load("efficientnet_b0", seed=0, channels_last=True)
        peer.eval()
        rows.append(("2D b0 inference, channels-last", name, ratio(inference(cl.eval(), x), inference(peer, x), repeats)))
        peer.train()
        rows.append(("2D b0 training step, channels-last", name, ratio(train_step(cl.train(), x, y), train_step(peer, x, y), max(3, repeats // 2))))
    # 3D b0, 1 channel, 2 classes, batch 2 at 64^3.
    x, y = torch.randn(2, 1, 64, 64, 64), torch.randint(0, 2, (2,))
    ours = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0)
    fused = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0, fuse=True)
    peer = monai_b0(3, 1, 2)
    ours.train(), peer.train()
    rows.append(("3D b0 training step, batch 2, 64³", "MONAI", ratio(train_step(ours, x, y), train_step(peer, x, y), max(3, repeats // 2))))
    ours.eval(), peer.eval()
    rows.append(("3D b0 inference, batch 2, 64³", "MONAI", ratio(inference(ours, x), inference(peer, x), repeats)))
    rows.append(("3D b0 inference, fused BN", "MONAI", ratio(inference(fused, x), inference(peer, x), repeats)))
    cl = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0, channels_last=True).eval()
    rows.append(("3D b0 inference, channels-last", "MONAI", ratio(inference(cl, x), inference(peer, x), repeats)))
    cl_fused = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0, fuse=True, channels_last=True)
    rows.append(("3D b0 inference, channels-last, fused BN", "MONAI", ratio(inference(cl_fused, x), inference(peer, x), repeats)))
    cl.train()
    rows.append(("3D b0 training step, channels-last", "MONAI", ratio(train_step(cl, x, y), train_step(peer, x, y), max(3, repeats // 2))))
    # bfloat16 autocast against archc's own float32.
    def bf16():
        with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
            fused(x)
    rows.append(("3D b0 inference, bf16 autocast (vs archc fp32)", "archc fp32", ratio(bf16, inference(fused, x), repeats)))
    # Building b7 in 3D from the spec, against constructing MONAI's.
    def build_ours():
        archc.load("efficientnet_b0", preset="b7", dims=3)

    def build_peer():
        from monai.networks.nets import EfficientNetBN

        EfficientNetBN("efficientnet-b7", pretrained=False, spatial_dims=3)

    rows.append(("build b7 3D (66M+ params)", "MONAI", ratio(build_ours, build_peer, 3)))
    return rows


MEMORY_CODE = """
import sys, torch, archc
variant, size = sys.argv[1], int(sys.argv[2])
if variant == "monai":
    from monai.networks.nets import EfficientNetBN
    model = EfficientNetBN("efficientnet-b0", pretrained=False, spatial_dims=3, in_channels=1, num_classes=2)
else:
    model = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0, checkpointing=variant == "archc-checkpointing")
x, y = torch.randn(2, 1, size, size, size), torch.randint(0, 2, (2,))
optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
def status(field):
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(field)))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident set: measure the step alone
before = status("VmRSS:")
import time; start = time.perf_counter()
torch.nn.functional.cross_entropy(model(x), y).backward()
optimiser.step()
print(status("VmHWM:") - before, time.perf_counter() - start)
"""


def memory(variant: str, size: int) -> tuple[int, float]:
    """(peak resident-set growth in KiB, seconds) of one 3D b0 training step, batch 2, in a fresh process
    (Linux: the peak is reset through /proc/self/clear_refs right before the step)."""
    out = subprocess.run([sys.executable, "-c", MEMORY_CODE, variant, str(size)], capture_output=True, text=True, check=True, cwd=ROOT)
    kib, seconds = out.stdout.split()
    return int(kib), float(seconds)


def process_seconds(*argv: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archc", *argv], capture_output=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--quick", action="store_true", help="fewer repetitions; print, write nothing")
    args = parser.parse_args()
    repeats = 5 if args.quick else 15

    rows = speed(repeats)
    for what, peer, value in rows:
        print(f"| {what} | {peer} | {value:.2f} |", flush=True)
    mem_64 = {v: memory(v, 64) for v in ("archc", "monai")}
    mem_96 = {v: memory(v, 96) for v in ("archc", "archc-checkpointing")}
    rows.append(("3D b0 training peak memory, 64³", "MONAI", mem_64["archc"][0] / mem_64["monai"][0]))
    rows.append(("3D b0 training at 96³ with checkpointing: memory", "archc plain", mem_96["archc-checkpointing"][0] / mem_96["archc"][0]))
    rows.append(("3D b0 training at 96³ with checkpointing: step time", "archc plain", mem_96["archc-checkpointing"][1] / mem_96["archc"][1]))
    validate_s = process_seconds("validate", "specs/efficientnet_b0.yaml")
    info_s = process_seconds("info", "specs/efficientnet_b0.yaml", "--phi", "10", "--dims", "3")

    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"
    for what, peer, value in rows[-3:]:
        print(f"| {what} | {peer} | {value:.2f} |")
    print(f"archc validate: {validate_s:.3f} s, archc info phi 10 3D: {info_s:.3f} s (whole processes)")
    print(json.dumps({"mem_64_kib": mem_64, "mem_96_kib": mem_96}))
    if args.quick:
        return
    write_report(rows, validate_s, info_s, machine, mem_64, mem_96)


def write_report(rows, validate_s, info_s, machine, mem_64, mem_96) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    labels = [f"{what}\nvs {peer}" for what, peer, _ in rows]
    values = [value for _, _, value in rows]
    fig, ax = plt.subplots(figsize=(9, 0.45 * len(rows) + 1.2))
    colours = ["#3b8f5c" if v <= 1 else "#c0504d" for v in values]
    ax.barh(range(len(rows)), values, color=colours)
    ax.axvline(1.0, color="black", linewidth=0.8)
    ax.set_yticks(range(len(rows)), labels, fontsize=7)
    ax.invert_yaxis()
    ax.set_xlabel("archc / peer (lower is better)")
    ax.set_title(f"archc against peers ({machine})", fontsize=9)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "performance.png", dpi=110)

    table = "\n".join(f"| {what} | {peer} | {value:.2f} |" for what, peer, value in rows)
    text = (ROOT / "docs" / "performance.md").read_text()
    start, end = "<!-- results -->", "<!-- /results -->"
    body = (
        f"{start}\nMeasured on {machine} with `python benchmarks/peers.py`.\n\n"
        f"| measurement | against | archc / peer |\n|---|---|---|\n{table}\n\n"
        f"Whole-process times: `archc validate` {validate_s:.3f} s; `archc info --phi 10 --dims 3` {info_s:.3f} s.\n\n"
        f"Peak resident-set growth of one 3D training step (KiB): 64³ archc {mem_64['archc'][0]:,}, MONAI {mem_64['monai'][0]:,}; "
        f"96³ archc {mem_96['archc'][0]:,}, with checkpointing {mem_96['archc-checkpointing'][0]:,}.\n\n"
        f"![archc / peer ratios](performance.png)\n{end}"
    )
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    (ROOT / "docs" / "performance.md").write_text(head + body + tail)


if __name__ == "__main__":
    main()
