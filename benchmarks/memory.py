"""The training-memory estimate of archc/budget.py against the measured peak of one training step (CPU):

    python benchmarks/memory.py

For each planned network (thin-slab and isotropic data, two bases, with and without checkpointing), a fresh
process builds the model, an Adam optimiser and a batch, notes its resident memory, runs two training steps
(forward, backward, optimiser step; the first allocates Adam's moments) and reads the process's peak resident
memory. measured = peak - resident before the steps + the weights (already resident then), so it counts what the
estimate counts: weights, gradients, optimiser states and activations, plus what the estimate leaves out
(gradients of activations in flight, workspace). Linux only (/proc and ru_maxrss in KiB).
"""

import json
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
import json, os, resource, sys
import torch
import archc
from archc.budget import training_cost

base, spacing, shape, batch, checkpointing = json.loads(sys.argv[1])
torch.manual_seed(0)
torch.set_num_threads(1)
spec = archc.plan(base, spacing=spacing, shape=shape, in_channels=1, num_classes=2).spec
model = archc.load(spec, checkpointing=checkpointing, seed=0).train()
optimiser = torch.optim.Adam(model.parameters(), lr=1e-4)
x = torch.randn(batch, 1, *model.plan.resolution)
y = torch.randint(0, 2, (batch,))
weights = sum(p.numel() for p in model.parameters()) * 4


def resident():
    with open("/proc/self/statm") as f:
        return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")


before = resident()
for _ in range(2):
    optimiser.zero_grad(set_to_none=True)
    torch.nn.functional.cross_entropy(model(x), y).backward()
    optimiser.step()
peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
cost = training_cost(archc.analyze(model.plan), checkpointing=checkpointing)
print(json.dumps({"estimate": cost.total(batch), "measured": peak - before + weights, "resolution": list(model.plan.resolution)}))
"""


def main() -> None:
    print(f"{'base':<18} {'shape':>12} {'batch':>5} {'ckpt':>5} {'estimate':>10} {'measured':>10} {'est/meas':>8}")
    for case in CASES:
        out = subprocess.run([sys.executable, "-c", CHILD, json.dumps(case)], capture_output=True, text=True, check=True)
        r = json.loads(out.stdout)
        base, _, _, batch, ckpt = case
        shape = "x".join(map(str, r["resolution"]))
        print(f"{base:<18} {shape:>12} {batch:>5} {str(ckpt):>5} {r['estimate'] / 2**20:>8.0f}Mi {r['measured'] / 2**20:>8.0f}Mi "
              f"{r['estimate'] / r['measured']:>8.2f}", flush=True)


if __name__ == "__main__":
    main()
