"""archc's emitted models against the implementations users would pick instead, measured as ratios.

    python benchmarks/peers.py              # every case (many minutes); writes docs/performance.md and .png
    python benchmarks/peers.py --quick      # a few small cases, well under a minute; prints only
    python benchmarks/peers.py --match 3D --repeats 31   # the full run's 3D cases, more pairs; prints only
    python benchmarks/peers.py --match resnet            # the 3D ResNet-18 and -50 cases; prints only

The peers: MONAI, timm and efficientnet-pytorch in 2D; MONAI and timm_3d (``pip install timm-3d``, timm's
models in 3D) in 3D. A peer that is not installed is skipped with a note on stderr. Besides EfficientNet-B0, 3D
ResNet-18 and -50 are timed against timm_3d (archc's resnet18/50, timm's layout) and MONAI (archc's
monai_resnet18/50, MONAI's layout), each pair checked to have the same parameter count first.

--quick runs a few small cases (2D b0 inference at batch 1, 128²; 3D b0 inference at batch 1, 32³, against
each 3D peer; building 2D b0), with three timed pairs each, and writes nothing: a check that the benchmark and
the peers work, not a measurement to publish.

The scaling sweep (full run only) times a 3D b0 training step for archc and each 3D peer from 32³ to 128³
and batch 1 to 8 (round-robin in this process, medians), measures each one's peak memory in a fresh process,
and draws both against the memory-bound floor: the bytes every layer must read and write in a training step
(counted with forward hooks) at the copy bandwidth measured on the machine.

Each row is printed to stdout as soon as its case finishes; which case is running, and how many there are,
goes to stderr (`2>/dev/null` keeps only the table).

Each ratio is archc / peer. The two are timed alternately in the same process (a, b, a, b, ...) and the
median of the per-pair ratios is reported, so drift in a shared machine's speed cancels. The script re-runs
itself with glibc's allocator kept in a steady state (``STEADY_ALLOCATOR``), so that page faults on fresh
memory do not decide the ratios. Peak memory is the growth of a fresh process's peak resident set over one
training step, each variant in its own process, with glibc's defaults.
"""

from __future__ import annotations

import argparse
import copy
import functools
import json
import os
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


def timm_b0(in_channels: int, num_classes: int):
    import timm

    return timm.create_model("efficientnet_b0", in_chans=in_channels, num_classes=num_classes)


def timm_3d_b0(in_channels: int, num_classes: int):
    import timm_3d

    return timm_3d.create_model("efficientnet_b0", in_chans=in_channels, num_classes=num_classes)


def efficientnet_pytorch_b0():
    from efficientnet_pytorch import EfficientNet

    return EfficientNet.from_name("efficientnet-b0")


def timm_3d_resnet(depth: int):
    import timm_3d

    return timm_3d.create_model(f"resnet{depth}", in_chans=1, num_classes=2)


def monai_resnet(depth: int):
    import monai.networks.nets

    return getattr(monai.networks.nets, f"resnet{depth}")(spatial_dims=3, n_input_channels=1, num_classes=2)


# Each peer: (name, what to install, builder). The first 2D and the first 3D peer installed get every row.
PEERS_2D = (("timm", "timm", lambda: timm_b0(3, 1000)), ("MONAI", "monai", lambda: monai_b0(2, 3, 1000)),
            ("efficientnet-pytorch", "efficientnet-pytorch", efficientnet_pytorch_b0))
PEERS_3D = (("timm_3d", "timm-3d", lambda: timm_3d_b0(1, 2)), ("MONAI", "monai", lambda: monai_b0(3, 1, 2)))


# Each 3D ResNet peer: (name, what to install, the archc spec of the same layout, builder taking the depth). timm_3d
# builds timm's ResNet (a stride-2 stem), as archc's resnet18/50 do; MONAI's has a stride-1 7x7x7 stem and a bias on
# the shortcut's conv, as archc's monai_resnet18/50 have.
RESNET_PEERS_3D = (("timm_3d", "timm-3d", "resnet{}", timm_3d_resnet), ("MONAI", "monai", "monai_resnet{}", monai_resnet))
RESNET_INPUT = (2, 1, 32, 64, 64)  # batch 2, 1 channel, 32x64x64: MONAI's full-resolution stem makes larger volumes slow


def installed(peers) -> dict[str, Callable[[], torch.nn.Module]]:
    """The peers whose package imports, by name (builders, not modules); a note on stderr for each missing one."""
    found = {}
    for name, package, make in peers:
        try:
            model = make()
        except ImportError:
            print(f"note: {name} is not installed (pip install {package}); its rows are skipped", file=sys.stderr)
            continue
        found[name] = lambda model=model: model
    return found


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
def ours(channels_last: bool = False, **args) -> torch.nn.Module:
    """archc's b0 with ``args`` (and channels-last weights), built once and shared by the cases that use it."""
    model = archc.load("efficientnet_b0", seed=0, **args)
    return model.set_channels_last() if channels_last else model


@functools.cache
def modules(make: Callable[[], torch.nn.Module]) -> torch.nn.Module:
    """A copy of ``make()`` that runs module by module: the ops a reference implementation runs, no fast path."""
    return copy.deepcopy(make()).set_fast_paths(False)


@functools.cache
def peers_2d() -> dict[str, Callable[[], torch.nn.Module]]:
    return installed(PEERS_2D)


@functools.cache
def peers_3d() -> dict[str, Callable[[], torch.nn.Module]]:
    return installed(PEERS_3D)


@functools.cache
def resnet_peers_3d() -> dict[str, tuple[str, Callable[[int], torch.nn.Module]]]:
    """The 3D ResNet peers whose package imports, by name: (archc's spec of their layout, builder); a note for each
    missing one."""
    found = {}
    for name, package, spec, make in RESNET_PEERS_3D:
        try:
            __import__(package.replace("-", "_"))
        except ImportError:
            print(f"note: {name} is not installed (pip install {package}); its ResNet rows are skipped", file=sys.stderr)
            continue
        found[name] = (spec, make)
    return found


@functools.cache
def resnet_pair(peer: str, depth: int) -> tuple[torch.nn.Module, torch.nn.Module]:
    """(archc's 3D ResNet, ``peer``'s) of the same layout, built once; refused unless their parameter counts are equal."""
    spec, make = resnet_peers_3d()[peer]
    ours = archc.load(spec.format(depth), dims=3, in_channels=1, num_classes=2, resolution=RESNET_INPUT[2:], seed=0)
    theirs = make(depth)
    counts = [sum(p.numel() for p in model.parameters()) for model in (ours, theirs)]
    if counts[0] != counts[1]:
        raise SystemExit(f"archc's {spec.format(depth)} has {counts[0]:,} parameters and {peer}'s resnet{depth} {counts[1]:,}: "
                         "not the same network, so their times are not comparable")
    return ours, theirs


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
    """Every speed case of the full benchmark, in the order of the report. The defaults against every peer;
    module by module (``set_fast_paths(False)``: no fast path) and the channels-last option against the first
    peer installed (timm in 2D, timm_3d in 3D)."""
    x2 = lambda: data(8, 3, 224, 224, classes=1000)  # 2D b0, batch 8 at 224^2
    for index, (name, peer) in enumerate(peers_2d().items()):
        yield "2D b0 inference, batch 8, 224²", name, infer(ours, peer, lambda: x2()[0], repeats)
        yield "2D b0 training step", name, train(ours, peer, x2, repeats)
        if index == 0:
            yield "2D b0 inference, module by module", name, infer(functools.partial(modules, ours), peer, lambda: x2()[0], repeats)
            yield "2D b0 training step, module by module", name, train(functools.partial(modules, ours), peer, x2, repeats)
            yield "2D b0 training step, channels-last", name, train(functools.partial(ours, channels_last=True), peer, x2, repeats)
    # 3D b0, 1 channel, 2 classes, batch 2 at 64^3.
    x3 = lambda: data(2, 1, 64, 64, 64, classes=2)
    b0_3d = functools.partial(ours, dims=3, in_channels=1, num_classes=2)
    for index, (name, peer) in enumerate(peers_3d().items()):
        yield "3D b0 training step, batch 2, 64³", name, train(b0_3d, peer, x3, repeats)
        yield "3D b0 inference, batch 2, 64³", name, infer(b0_3d, peer, lambda: x3()[0], repeats)
        if index == 0:
            yield "3D b0 inference, module by module", name, infer(functools.partial(modules, b0_3d), peer, lambda: x3()[0], repeats)
            yield "3D b0 training step, module by module", name, train(functools.partial(modules, b0_3d), peer, x3, repeats)
            yield "3D b0 training step, channels-last", name, train(functools.partial(b0_3d, channels_last=True), peer, x3, repeats)

    # 3D ResNet-18 and -50, 1 channel, 2 classes, batch 2 at 32x64x64: each peer against the archc spec of its layout
    # (named in the row), their parameter counts checked equal first.
    xr = lambda: data(*RESNET_INPUT, classes=2)
    size = "×".join(map(str, RESNET_INPUT[2:]))
    for depth in (18, 50):
        for name, (spec, _) in resnet_peers_3d().items():
            pair = functools.partial(resnet_pair, name, depth)
            mine, theirs = (lambda pair=pair: pair()[0]), (lambda pair=pair: pair()[1])
            yield f"3D {spec.format(depth)} training step, batch 2, {size}", name, train(mine, theirs, xr, repeats)
            yield f"3D {spec.format(depth)} inference, batch 2, {size}", name, infer(mine, theirs, lambda: xr()[0], repeats)

    # The depthwise convs' rewritten backward (archc.emit.depthwise) against the plain op, in the same model.
    def plain_depthwise():
        from archc.emit import depthwise

        model, (x, y) = b0_3d().train(), x3()
        fast = depthwise.fast_backward

        def plain():
            depthwise.fast_backward = lambda *args: False
            try:
                step()
            finally:
                depthwise.fast_backward = fast
        step = train_step(model, x, y)
        return ratio(step, plain, max(3, repeats // 2))

    yield "3D b0 training step, depthwise backward rewritten", "archc, plain op", plain_depthwise

    # bfloat16 autocast against archc's own float32.
    def bf16():
        model, x = b0_3d().eval(), x3()[0]

        def run():
            with torch.inference_mode(), torch.autocast("cpu", dtype=torch.bfloat16):
                model(x)
        return ratio(run, inference(model, x), repeats)

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
    for name, peer in peers_3d().items():
        yield "3D b0 inference, batch 1, 32³", name, infer(functools.partial(ours, dims=3, in_channels=1, num_classes=2), peer, x3, repeats)

    def build_ours():
        archc.load("efficientnet_b0")

    yield "build b0 2D", "MONAI", lambda: ratio(build_ours, lambda: monai_b0(2, 3, 1000), repeats)


def memory_cases() -> Iterator[Case]:
    for name in peers_3d():
        yield "3D b0 training peak memory, 64³", name, lambda name=name: memory("archc", 64)[0] / memory(name, 64)[0]
    yield ("3D b0 training peak memory at 96³", "archc, module by module",
           lambda: memory("archc", 96)[0] / memory("archc-modules", 96)[0])
    yield ("3D b0 training peak memory at 96³, tensors only", "archc, module by module",
           lambda: memory("archc", 96, tensors_only=True)[0] / memory("archc-modules", 96, tensors_only=True)[0])
    yield ("3D b0 training at 96³ with checkpointing: memory", "archc plain",
           lambda: memory("archc-checkpointing", 96)[0] / memory("archc", 96)[0])
    yield ("3D b0 training at 96³ with checkpointing: memory, tensors only", "archc plain",
           lambda: memory("archc-checkpointing", 96, tensors_only=True)[0] / memory("archc", 96, tensors_only=True)[0])
    yield ("3D b0 training at 96³ with checkpointing: memory, tensors only", "archc plain, module by module",
           lambda: memory("archc-checkpointing", 96, tensors_only=True)[0] / memory("archc-modules", 96, tensors_only=True)[0])

    def checkpointing_time():
        x96 = data(2, 1, 96, 96, 96, classes=2)
        plain = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0).train()
        checkpointed = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0, checkpointing=True).train()
        return ratio(train_step(checkpointed, *x96), train_step(plain, *x96), 3)

    yield "3D b0 training at 96³ with checkpointing: step time", "archc plain", checkpointing_time


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
import sys, time, torch, archc
sys.path.insert(0, sys.argv[4])
import peers
variant, size, batch = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
if variant.startswith("archc"):
    model = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0, checkpointing=variant == "archc-checkpointing")
    model.set_fast_paths(variant != "archc-modules")
else:
    model = dict((name, make) for name, _, make in peers.PEERS_3D)[variant]()
x, y = torch.randn(batch, 1, size, size, size), torch.randint(0, 2, (batch,))
optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
def status(field):
    return int(next(line.split()[1] for line in open("/proc/self/status") if line.startswith(field)))
with open("/proc/self/clear_refs", "w") as f:
    f.write("5")  # reset the peak (VmHWM) to the current resident set: measure the step alone
before = status("VmRSS:")
start = time.perf_counter()
torch.nn.functional.cross_entropy(model(x), y).backward()
optimiser.step()
print(status("VmHWM:") - before, time.perf_counter() - start)
"""


# The timings run with glibc told to keep what it frees (no heap trimming; blocks under 32 MiB from the heap), as
# a process is once it has trained a few steps. Otherwise, in a fresh process, a freed block returns to the
# system and the next one of its size page-faults on first touch: that cost, not the arithmetic, then separates
# implementations that allocate more from those that allocate less (3D b0 inference: archc 0.52x timm_3d's time
# fresh, 0.70x steady). The memory measurements run in processes with glibc's defaults, as users have them.
STEADY_ALLOCATOR = {"MALLOC_MMAP_THRESHOLD_": str(32 * 2**20), "MALLOC_TRIM_THRESHOLD_": str(2**36)}


@functools.cache
def memory(variant: str, size: int, batch: int = 2, tensors_only: bool = False) -> tuple[int, float]:
    """(peak resident-set growth in KiB, seconds) of one 3D b0 training step in a fresh process (Linux: the peak
    is reset through /proc/self/clear_refs right before the step). ``variant``: archc, archc-checkpointing,
    archc-modules (module by module) or a 3D peer's name. glibc keeps freed blocks below its mmap threshold
    (which grows to 32 MiB as large blocks are freed) for reuse, so the resident set also holds the heap's
    high-water mark; with ``tensors_only`` every block of 1 MiB or more is mapped and returned when freed
    (``MALLOC_MMAP_THRESHOLD_``), and the peak follows the tensors alive at once."""
    env = {name: value for name, value in os.environ.items() if name not in STEADY_ALLOCATOR}
    if tensors_only:
        env["MALLOC_MMAP_THRESHOLD_"] = str(2**20)
    out = subprocess.run([sys.executable, "-c", MEMORY_CODE, variant, str(size), str(batch), str(Path(__file__).parent)],
                         capture_output=True, text=True, check=True, cwd=ROOT, env=env)
    kib, seconds = out.stdout.split()
    return int(kib), float(seconds)


# The scaling sweep: (size, batch) points, sparse: the size axis at batch 2, the batch axis at 64^3.
SWEEP = ((32, 2), (64, 2), (96, 2), (128, 2), (64, 1), (64, 4), (64, 8))


def bandwidth() -> float:
    """Bytes per second this machine copies (read + write) between two 256 MiB float32 tensors: median of 5."""
    a = torch.empty(2**26)
    b = torch.empty_like(a)
    a.normal_()
    times = []
    for _ in range(6):
        start = time.perf_counter()
        b.copy_(a)
        times.append(time.perf_counter() - start)
    return 2 * a.numel() * 4 / statistics.median(times[1:])


def traffic_per_voxel() -> float:
    """Bytes a 3D b0 training step must move per input voxel (per sample), at the least: every conv, norm and
    activation reads its input and writes its output in forward, and in backward reads its output's gradient
    and its saved input and writes its input's gradient. Counted with forward hooks at 32³ (the residual adds and
    SE products, not modules, are left out: a floor); activations grow with the voxels, so it scales linearly."""
    model = archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0).eval()
    moved = [0]

    def hook(module, inputs, output):
        if not list(module.children()) and not isinstance(module, (torch.nn.Identity, torch.nn.Dropout)):  # those move nothing
            read, written = inputs[0].numel() * 4, output.numel() * 4
            moved[0] += (read + written) + (written + 2 * read)  # forward; backward
    handles = [m.register_forward_hook(hook) for m in model.modules()]
    with torch.no_grad():
        model(torch.randn(1, 1, 32, 32, 32))
    for handle in handles:
        handle.remove()
    return moved[0] / 32**3


def scaling(rounds: int = 3) -> dict:
    """For each sweep point: the training-step seconds of archc and each 3D peer (round-robin in this process,
    medians of ``rounds`` after a warm-up) and each one's peak memory (a fresh process each), and the floor."""
    models = {"archc": lambda: archc.load("efficientnet_b0", dims=3, in_channels=1, num_classes=2, seed=0)}
    models.update((name, make) for name, make in peers_3d().items())
    per_voxel, speed = traffic_per_voxel(), bandwidth()
    points = []
    for index, (size, batch) in enumerate(SWEEP, start=1):
        progress(index, len(SWEEP), f"scaling: 3D b0 training at {size}³, batch {batch}")
        x, y = data(batch, 1, size, size, size, classes=2)
        steps = {name: train_step(make().train(), x, y) for name, make in models.items()}
        times = {name: [] for name in steps}
        for round_ in range(rounds + 1):
            for name, step in steps.items():
                start = time.perf_counter()
                step()
                if round_:  # the first round warms up
                    times[name].append(time.perf_counter() - start)
        point = {"size": size, "batch": batch, "floor_s": per_voxel * batch * size**3 / speed,
                 "seconds": {name: statistics.median(t) for name, t in times.items()},
                 "peak_kib": {name: memory(name, size, batch)[0] for name in steps}}
        points.append(point)
        print(json.dumps(point), flush=True)
    return {"bandwidth_gb_s": speed / 1e9, "bytes_per_voxel": per_voxel, "points": points}


def process_seconds(*argv: str, repeats: int = 5) -> float:
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        subprocess.run([sys.executable, "-m", "archc", *argv], capture_output=True, check=True, cwd=ROOT)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def main() -> None:
    parser = argparse.ArgumentParser(
        description="archc's models against timm, timm_3d, MONAI and efficientnet-pytorch, as archc/peer ratios (lower "
        "is better). Rows go to stdout as each case finishes, progress to stderr.")
    parser.add_argument("--quick", action="store_true",
                        help="a few small cases (2D at 128², 3D at 32³, batch 1; building b0), well under a minute; print, write nothing")
    parser.add_argument("--match", metavar="TEXT",
                        help="only the full run's cases whose measurement contains TEXT (e.g. '3D b0 training'); print, write nothing")
    parser.add_argument("--repeats", type=int, default=15, help="timed pairs per inference case (training: half); default 15")
    args = parser.parse_args()
    if any(os.environ.get(name) != value for name, value in STEADY_ALLOCATOR.items()):
        os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **STEADY_ALLOCATOR})  # timed as in a steady state
    if args.quick:
        run(list(quick_cases()))
        return
    if args.match:
        run([case for case in [*speed_cases(args.repeats), *memory_cases()] if args.match in case[0]])
        return

    cases = [*speed_cases(args.repeats), *memory_cases()]
    total = len(cases) + 2  # and the two whole-process timings
    rows = run(cases)
    progress(total - 1, total, "archc validate, whole processes")
    validate_s = process_seconds("validate", "specs/efficientnet_b0.yaml")
    progress(total, total, "archc info --phi 10 --dims 3, whole processes")
    info_s = process_seconds("info", "specs/efficientnet_b0.yaml", "--phi", "10", "--dims", "3")
    print(f"archc validate: {validate_s:.3f} s, archc info phi 10 3D: {info_s:.3f} s (whole processes)", flush=True)
    sweep = scaling()
    machine = f"{platform.machine()}, {torch.get_num_threads()} threads, torch {torch.__version__}, Python {platform.python_version()}"
    write_report(rows, validate_s, info_s, machine, sweep)


def against_faster_peer(rows, what: str) -> str:
    """archc / the faster 3D peer for the row ``what``: the largest of its ratios (the faster peer, the larger)."""
    found = [(value, peer) for row, peer, value in rows if row == what and not peer.startswith("archc")]
    if not found:
        return "no peer installed"
    value, peer = max(found)
    return f"{value:.2f} (the faster peer here: {peer})"


def write_report(rows, validate_s, info_s, machine, sweep) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (bars, times, peaks) = plt.subplots(3, 1, figsize=(9, 0.45 * len(rows) + 9.5),
                                             gridspec_kw={"height_ratios": [0.45 * len(rows) + 1.2, 4, 4]})
    labels = [f"{what}\nvs {peer}" for what, peer, _ in rows]
    values = [value for _, _, value in rows]
    bars.barh(range(len(rows)), values, color=["#3b8f5c" if v <= 1 else "#c0504d" for v in values])
    bars.axvline(1.0, color="black", linewidth=0.8)
    bars.set_yticks(range(len(rows)), labels, fontsize=7)
    bars.invert_yaxis()
    bars.set_xlabel("archc / peer (lower is better)")
    bars.set_title(f"archc against peers ({machine})", fontsize=9)

    points = sorted(sweep["points"], key=lambda p: p["batch"] * p["size"] ** 3)
    voxels = [p["batch"] * p["size"] ** 3 for p in points]
    ticks = [f"{p['size']}³×{p['batch']}" for p in points]
    for name in points[0]["seconds"]:
        times.plot(voxels, [p["seconds"][name] for p in points], marker="o", label=name)
        peaks.plot(voxels, [p["peak_kib"][name] / 2**20 for p in points], marker="o", label=name)
    times.plot(voxels, [p["floor_s"] for p in points], color="black", linestyle="--",
               label=f"memory-bound floor ({sweep['bytes_per_voxel'] / 1e3:.0f} kB/voxel at {sweep['bandwidth_gb_s']:.1f} GB/s)")
    for ax, ylabel in ((times, "training step (s)"), (peaks, "peak memory growth (GiB)")):
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_xticks(voxels, ticks, fontsize=7, rotation=30)
        ax.minorticks_off()
        ax.set_ylabel(ylabel)
        ax.legend(fontsize=7)
    times.set_title("3D b0 training step: size³ × batch", fontsize=9)
    fig.tight_layout()
    fig.savefig(ROOT / "docs" / "performance.png", dpi=100)

    table = "\n".join(f"| {what} | {peer} | {value:.2f} |" for what, peer, value in rows)
    sweep_rows = "\n".join(
        f"| {p['size']}³ | {p['batch']} | " + " | ".join(f"{p['seconds'][n]:.2f} s, {p['peak_kib'][n] / 2**20:.2f} GiB" for n in p["seconds"])
        + f" | {p['floor_s']:.3f} s |" for p in sweep["points"])
    names = list(sweep["points"][0]["seconds"])
    text = (ROOT / "docs" / "performance.md").read_text()
    start, end = "<!-- results -->", "<!-- /results -->"
    body = (
        f"{start}\nMeasured on {machine} with `python benchmarks/peers.py`.\n\n"
        f"3D b0 against the faster of the 3D peers (archc / peer): training step "
        f"{against_faster_peer(rows, '3D b0 training step, batch 2, 64³')}; inference "
        f"{against_faster_peer(rows, '3D b0 inference, batch 2, 64³')}.\n\n"
        f"| measurement | against | archc / peer |\n|---|---|---|\n{table}\n\n"
        f"Whole-process times: `archc validate` {validate_s:.3f} s; `archc info --phi 10 --dims 3` {info_s:.3f} s.\n\n"
        f"How a 3D b0 training step grows (step time: median of 3, round-robin in one process; peak: resident-set "
        f"growth of one step in a fresh process; floor: {sweep['bytes_per_voxel'] / 1e3:.0f} kB moved per voxel at the "
        f"measured copy bandwidth, {sweep['bandwidth_gb_s']:.1f} GB/s):\n\n"
        f"| size | batch | {' | '.join(names)} | floor |\n|---|---|{'---|' * len(names)}---|\n{sweep_rows}\n\n"
        f"![archc / peer ratios, and how the training step grows](performance.png)\n{end}"
    )
    head, _, rest = text.partition(start)
    _, _, tail = rest.partition(end)
    (ROOT / "docs" / "performance.md").write_text(head + body + tail)


if __name__ == "__main__":
    main()
