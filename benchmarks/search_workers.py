"""The same 8-network coefficient search on 1 and 2 workers (docs/scaling.md, "How much faster on more workers"):

    python benchmarks/search_workers.py

The small 3D base tests/fixtures/tiny3d.yaml at budget 2, step 0.1, tolerance 0.2: 32 candidates that build 8
distinct networks, each evaluated by a short training run (``train_briefly``: 10 SGD steps of batch 4 at the
candidate's resolution, one thread). Timed: in this process (no engine), then on a Dask LocalCluster of 1 and of 2
single-threaded worker processes, each cluster started and warmed (torch imported on every worker) before the clock
starts, so the figures are the search itself. Prints a table; writes nothing.
"""

import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
TINY = str(ROOT / "tests" / "fixtures" / "tiny3d.yaml")
SEARCH = dict(budget=2.0, step=0.1, tolerance=0.2)


def train_briefly(model, resolution) -> float:
    """A stand-in for a real candidate's training run: fixed work per network, more for larger ones."""
    import torch

    torch.set_num_threads(1)
    generator = torch.Generator().manual_seed(0)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.01)
    for _ in range(10):
        x = torch.randn(4, model.plan.in_channels, *resolution, generator=generator)
        y = torch.randint(0, model.plan.head.num_classes, (4,), generator=generator)
        optimiser.zero_grad()
        loss = torch.nn.functional.cross_entropy(model(x), y)
        loss.backward()
        optimiser.step()
    return -float(loss.detach())


def _warm():
    import torch  # noqa: F401

    import archc  # noqa: F401


def main() -> None:
    sys.path.insert(0, str(ROOT))
    sys.path.insert(0, str(Path(__file__).resolve().parent))  # the workers import this module by name
    import torch
    from search_workers import train_briefly as evaluate

    from archc.search import candidates, grid

    torch.set_num_threads(1)
    found, _ = candidates(TINY, **SEARCH)
    print(f"{len(found)} candidates, {len(set(c.network for c in found))} distinct networks evaluated\n")
    print("| engine | workers | wall time (s) | speed-up |")
    print("|---|---|---|---|")
    started = time.perf_counter()
    grid(TINY, evaluate, **SEARCH)
    serial = time.perf_counter() - started
    print(f"| this process | 1 | {serial:.1f} | 1.00 |", flush=True)

    from distributed import Client, LocalCluster

    for workers in (1, 2):
        with LocalCluster(n_workers=workers, threads_per_worker=1, processes=True, dashboard_address=None) as cluster, Client(cluster) as client:
            client.run(_warm)
            started = time.perf_counter()
            grid(TINY, evaluate, executor=client.get_executor(pure=False), **SEARCH)
            elapsed = time.perf_counter() - started
        print(f"| Dask LocalCluster | {workers} | {elapsed:.1f} | {serial / elapsed:.2f} |", flush=True)


if __name__ == "__main__":
    main()
