"""The training-memory estimate of archc/budget.py against the measured peak of one training step (CPU):

    python benchmarks/memory.py

For each planned network (thin-slab and isotropic data, three bases, with and without checkpointing), a process
forked from one that has imported torch and archc (so each network starts from the same clean state, as a fresh
process would, without importing torch again; two at a time, as each peak is its own process's) builds the model, an Adam optimiser and a batch, notes its resident
memory, resets its peak (/proc/self/clear_refs), runs two training steps (forward, backward, optimiser step; the
first allocates Adam's moments) and reads its peak resident memory (VmHWM). measured = peak - resident before the
steps + the weights (already resident then), so it counts what the estimate counts: weights, gradients, optimiser
states and activations, plus what the estimate leaves out (gradients of activations in flight, workspace). The
child runs with a fixed malloc mmap threshold (see :func:`measure`), so the CPU allocator's slack is not counted.
Linux only. tests/test_budget.py measures six small networks with :func:`measure` and asserts the error that
docs/planning.md states.
"""

import json
import os
import subprocess
import sys

CASES = [  # base, spacing, shape, batch, checkpointing
    ("efficientnet3d_b0", (5, 0.7, 0.7), (16, 128, 128), 2, False),
    ("efficientnet3d_b0", (5, 0.7, 0.7), (16, 128, 128), 2, True),
    ("efficientnet3d_b0", (1, 1, 1), (48, 48, 48), 2, False),
    ("efficientnet_b0", (3, 0.8, 0.8), (24, 96, 96), 2, False),
    ("mobilenetv2_100", (2, 1, 1), (32, 64, 64), 2, False),
    ("efficientnet_b0", (1, 1, 1), (64, 64, 64), 1, True),
]

CHILD = r"""
import gc, json, os, sys
import torch
import archc
from archc.budget import training_cost

torch.set_num_threads(1)


def status(key):
    with open("/proc/self/status") as f:
        return next(int(line.split()[1]) * 1024 for line in f if line.startswith(key + ":"))


def run(base, spacing, shape, batch, checkpointing):
    torch.manual_seed(0)
    spec = archc.plan(base, spacing=spacing, shape=shape, in_channels=1, num_classes=2).spec
    model = archc.load(spec, checkpointing=checkpointing, seed=0).train()
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
    x = torch.randn(batch, 1, *model.plan.resolution)
    y = torch.randint(0, 2, (batch,))
    weights = sum(p.numel() for p in model.parameters()) * 4
    gc.collect()
    before = status("VmRSS")
    with open("/proc/self/clear_refs", "w") as f:
        f.write("5")  # the peak (VmHWM) starts again from what is resident now
    for _ in range(2):
        optimiser.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(model(x), y).backward()
        optimiser.step()
    peak = status("VmHWM")
    cost = training_cost(archc.analyze(model.plan), checkpointing=checkpointing)
    return {"estimate": cost.total(batch), "measured": peak - before + weights, "resolution": list(model.plan.resolution)}


def start(case):
    read, write = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read)
        status_code = 1
        try:
            os.write(write, json.dumps(run(*case)).encode())
            status_code = 0
        finally:
            os._exit(status_code)
    os.close(write)
    return pid, read


def finish(case, pid, read):
    with os.fdopen(read) as f:
        out = f.read()
    _, code = os.waitpid(pid, 0)
    if code:
        raise RuntimeError(f"measuring {case} failed")
    return json.loads(out)


# Two networks at a time (each peak is its own process's); results in the order given.
cases = json.loads(sys.argv[1])
results, running = [None] * len(cases), []
for i, case in enumerate(cases):
    if len(running) == 2:
        j, pid, read = running.pop(0)
        results[j] = finish(cases[j], pid, read)
    running.append((i, *start(case)))
for j, pid, read in running:
    results[j] = finish(cases[j], pid, read)
print(json.dumps(results))
"""


def measure(cases) -> list[dict]:
    """Each planned network's estimate and measured peak, in bytes: [{"estimate", "measured", "resolution"}, ...]."""
    # glibc raises its mmap threshold as large blocks are freed, after which freed activations stay resident in its heap
    # and the peak counts that slack; a fixed threshold gives every large tensor a mapping of its own, returned when
    # the tensor is freed, so the peak is the tensors' (as a device allocator would hold them, less its own slack)
    env = {**os.environ, "MALLOC_MMAP_THRESHOLD_": "65536"}
    out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(cases)], capture_output=True, text=True, check=True, env=env)
    return json.loads(out.stdout)


def main() -> None:
    print(f"{'base':<18} {'shape':>12} {'batch':>5} {'ckpt':>5} {'estimate':>10} {'measured':>10} {'est/meas':>8}")
    for case, r in zip(CASES, measure(CASES)):
        base, _, _, batch, ckpt = case
        shape = "x".join(map(str, r["resolution"]))
        print(f"{base:<18} {shape:>12} {batch:>5} {str(ckpt):>5} {r['estimate'] / 2**20:>8.0f}Mi {r['measured'] / 2**20:>8.0f}Mi "
              f"{r['estimate'] / r['measured']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
