"""archc's emitted models against the implementations users would pick instead, measured as ratios.

    python benchmarks/peers.py              # every case (many minutes); writes docs/performance.md and .png
    python benchmarks/peers.py --quick      # a few small cases, well under a minute; prints only

--quick runs three small cases (2D b0 inference at batch 1, 128²; 3D b0 inference at batch 1, 32³; building
2D b0), each against MONAI, with three timed pairs each, and writes nothing: a check that the benchmark and
the peers work, not a measurement to publish.

Each row is printed to stdout as soon as its case finishes; which case is running, and how many there are,
goes to stderr (`2>/dev/null` keeps only the table).

Each ratio is archc / peer. The two are timed alternately in the same process (a, b, a, b, ...) and the
median of the per-pair ratios is reported, so drift in a shared machine's speed cancels. Peak memory is the
growth of a fresh process's peak resident set over one training step, each variant in its own process.
"""

from __future__ import annotations

import argparse
import functools
import json
import platform
import statistics
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
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


# A case: (what is measured, against which peer, the measurement: a thunk run only when the case's turn comes).
Case = tuple[str, str, Callable[[], float]]


@functools.cache
def ours(**args) -> torch.nn.Module:
    """archc's b0 with ``args``, built once and shared by the cases that use it."""
    return archc.load("efficientnet_b0", seed=0, **args)


@functools.cache
def installed_peers_2d() -> dict[str, torch.nn.Module]:
    return dict(peers_2d())


def peer_2d(name: str) -> torch.nn.Module:
    return installed_peers_2d()[name]


@functools.cache
def monai_3d() -> torch.nn.Module:
    return monai_b0(3, 1, 2)


@functools.cache
def data(*shape: int, classes: int) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(0)
    return torch.randn(*shape, generator=generator), torch.randint(0, classes, (shape[0],), generator=generator)


def infer(a, b, x, repeats: int) -> Callable[[], float]:
    """archc ``a`` against ``b`` in eval mode on ``x`` (modules or thunks that make them)."""
    def measure():
        ma, mb = a().eval(), b().eval()
        return ratio(inference(ma, x()), inference(mb, x()), repeats)
    return measure


def train(a, b, xy, repeats: int) -> Callable[[], float]:
    def measure():
        ma, mb = a().train(), b().train()
        x, y = xy()
        return ratio(train_step(ma, x, y), train_step(mb, x, y), max(3, repeats // 2))
    return measure


def speed_cases(repeats: int) -> Iterator[Case]:
    """Every speed case of the full benchmark, in the order of the report."""
    x2 = lambda: data(8, 3, 224, 224, classes=1000)  # 2D b0, batch 8 at 224^2
    for name in installed_peers_2d():
        peer = functools.partial(peer_2d, name)
        yield "2D b0 inference, batch 8, 224²", name, infer(ours, peer, lambda: x2()[0], repeats)
        yield "2D b0 inference, fused BN", name, infer(functools.partial(ours, fuse=True), peer, lambda: x2()[0], repeats)
        yield "2D b0 training step", name, train(ours, peer, x2, repeats)
        yield "2D b0 inference, channels-last", name, infer(functools.partial(ours, channels_last=True), peer, lambda: x2()[0], repeats)
        yield "2D b0 training step, channels-last", name, train(functools.partial(ours, channels_last=True), peer, x2, repeats)
    # 3D b0, 1 channel, 2 classes, batch 2 at 64^3.
    x3 = lambda: data(2, 1, 64, 64, 64, classes=2)
    b0_3d = functools.partial(ours, dims=3, in_channels=1, num_classes=2)
    yield "3D b0 training step, batch 2, 64³", "MONAI", train(b0_3d, monai_3d, x3, repeats)
    yield "3D b0 inference, batch 2, 64³", "MONAI", infer(b0_3d, monai_3d, lambda: x3()[0], repeats)
    yield "3D b0 inference, fused BN", "MONAI", infer(functools.partial(b0_3d, fuse=True), monai_3d, lambda: x3()[0], repeats)
    yield "3D b0 inference, channels-last", "MONAI", infer(functools.partial(b0_3d, channels_last=True), monai_3d, lambda: x3()[0], repeats)
    yield ("3D b0 inference, channels-last, fused BN", "MONAI",
           infer(functools.partial(b0_3d, fuse=True, channels_last=True), monai_3d, lambda: x3()[0], repeats))
    yield "3D b0 training step, channels-last", "MONAI", train(functools.partial(b0_3d, channels_last=True), monai_3d, x3, repeats)

    # bfloat16 autocast against archc's own float32.
    def bf16():
        fused, x = b0_3d(fuse=True).eval(), x3()[0]

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                fused(x)
        return ratio(run, inference(fused, x), repeats)

    yield "3D b0 inference, bf16 autocast (vs archc fp32)", "archc fp32", bf16

    # Building b7 in 3D from the spec, against constructing MONAI's.
    def build_ours():
        archc.load("efficientnet_b0", preset="b7", dims=3)

    def build_peer():
        from monai.networks.nets import EfficientNetBN

        EfficientNetBN("efficientnet-b7", pretrained=False, spatial_dims=3)

    yield "build b7 3D (66M+ params)", "MONAI", lambda: ratio(build_ours, build_peer, 3)


def quick_cases(repeats: int = 3) -> Iterator[Case]:
    """A few small cases, well under a minute together: that the benchmark and the peers run, not a result."""
    x2 = lambda: data(1, 3, 128, 128, classes=1000)[0]
    yield "2D b0 inference, batch 1, 128²", "MONAI", infer(ours, lambda: monai_b0(2, 3, 1000), x2, repeats)
    x3 = lambda: data(1, 1, 32, 32, 32, classes=2)[0]
    yield "3D b0 inference, batch 1, 32³", "MONAI", infer(functools.partial(ours, dims=3, in_channels=1, num_classes=2), monai_3d, x3, repeats)

    def build_ours():
        archc.load("efficientnet_b0")

    yield "build b0 2D", "MONAI", lambda: ratio(build_ours, lambda: monai_b0(2, 3, 1000), repeats)


def memory_cases() -> Iterator[Case]:
    yield "3D b0 training peak memory, 64³", "MONAI", lambda: memory("archc", 64)[0] / memory("monai", 64)[0]
    yield ("3D b0 training at 96³ with checkpointing: memory", "archc plain",
           lambda: memory("archc-checkpointing", 96)[0] / memory("archc", 96)[0])
    yield ("3D b0 training at 96³ with checkpointing: step time", "archc plain",
           lambda: memory("archc-checkpointing", 96)[1] / memory("archc", 96)[1])


def progress(index: int, total: int, what: str) -> None:
    print(f"[{index}/{total}] {what} ...", file=sys.stderr, flush=True)


def run(cases: list[Case]) -> list[tuple[str, str, float]]:
    """Measure each case in turn: progress to stderr before it starts, its row to stdout when it is done."""
    rows = []
    for index, (what, peer, measure) in enumerate(cases, start=1):
        progress(index, len(cases), f"{what} vs {peer}")
        rows.append((what, peer, measure()))
        print(f"| {what} | {peer} | {rows[-1][2]:.2f} |", flush=True)
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


@functools.cache
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
    parser = argparse.ArgumentParser(
        description="archc's models against MONAI and efficientnet-pytorch, as archc/peer ratios (lower is better). "
        "Rows go to stdout as each case finishes, progress to stderr.")
    parser.add_argument("--quick", action="store_true",
                        help="a few small cases (2D at 128², 3D at 32³, batch 1; building b0), well under a minute; print, write nothing")
    args = parser.parse_args()
    if args.quick:
        run(list(quick_cases()))
        return

    cases = [*speed_cases(15), *memory_cases()]
    total = len(cases) + 2  # and the two whole-process timings
    rows = run(cases)
    progress(total - 1, total, "archc validate, whole processes")
    validate_s = process_seconds("validate", "specs/efficientnet_b0.yaml")
    progress(total, total, "archc info --phi 10 --dims 3, whole processes")
    info_s = process_seconds("info", "specs/efficientnet_b0.yaml", "--phi", "10", "--dims", "3")
    mem_64 = {v: memory(v, 64) for v in ("archc", "monai")}
    mem_96 = {v: memory(v, 96) for v in ("archc", "archc-checkpointing")}

    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"
    print(f"archc validate: {validate_s:.3f} s, archc info phi 10 3D: {info_s:.3f} s (whole processes)", flush=True)
    print(json.dumps({"mem_64_kib": mem_64, "mem_96_kib": mem_96}), flush=True)
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
