"""The emitted modules under PyTorch's own distributed engine: two CPU processes, gloo, DDP."""

import os
import socket
from pathlib import Path

import pytest
import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from conftest import TINY3D
from torch.nn.parallel import DistributedDataParallel

import archc

TINY = str(TINY3D)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _train(rank: int, world: int, port: int, out: str) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    torch.set_num_threads(1)
    model = archc.load(TINY, resolution=16, seed=0)  # same seed: same start on every rank
    ddp = DistributedDataParallel(model)
    optimiser = torch.optim.SGD(ddp.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(100 + rank)  # each rank sees its own data
    for _ in range(3):
        x, y = torch.randn(4, 1, 16, 16, 16, generator=generator), torch.randint(0, 2, (4,), generator=generator)
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        optimiser.step()
    torch.save({k: v.detach() for k, v in model.named_parameters()}, Path(out) / f"rank{rank}.pt")
    dist.destroy_process_group()


def _reference(world: int) -> dict:
    """What DDP should compute, without it: one process, each rank's batch through the same weights, the
    gradients averaged, one SGD step."""
    torch.set_num_threads(1)
    model = archc.load(TINY, resolution=16, seed=0)
    optimiser = torch.optim.SGD(model.parameters(), lr=0.1)
    generators = [torch.Generator().manual_seed(100 + rank) for rank in range(world)]
    for _ in range(3):
        batches = [(torch.randn(4, 1, 16, 16, 16, generator=g), torch.randint(0, 2, (4,), generator=g)) for g in generators]
        grads = []
        for x, y in batches:
            model.zero_grad()
            torch.nn.functional.cross_entropy(model(x), y).backward()
            grads.append([p.grad.clone() for p in model.parameters()])
        for p, *per_rank in zip(model.parameters(), *grads):
            p.grad = sum(per_rank) / world
        optimiser.step()
    return {k: v.detach() for k, v in model.named_parameters()}


@pytest.mark.slow
def test_ddp_averages_the_ranks_gradients(tmp_path):
    mp.spawn(_train, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    threads = torch.get_num_threads()
    try:
        expected = _reference(2)  # one thread, as each rank ran: the same sums in the same order
    finally:
        torch.set_num_threads(threads)  # the tests after this one run as before it
    start = dict(archc.load(TINY, resolution=16, seed=0).named_parameters())
    assert ranks[0].keys() == ranks[1].keys() == expected.keys()
    assert any(not torch.equal(expected[k], start[k].detach()) for k in start)  # training happened
    for rank in ranks:
        for key, value in expected.items():
            torch.testing.assert_close(rank[key], value, atol=1e-6, rtol=1e-5)


def test_sync_bn():
    model = torch.nn.SyncBatchNorm.convert_sync_batchnorm(archc.load(TINY, seed=0))
    norms = [type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and set(norms) == {"SyncBatchNorm"}
    assert list(model.state_dict()) == list(archc.load(TINY, seed=0).state_dict())
    assert model.plan.name == "tiny3d"


@pytest.mark.slow
def test_a_search_candidate_trains_on_two_ranks_through_torchrun(tmp_path):
    """`archc search` whose evaluator starts torchrun (2 CPU ranks, gloo) for its candidate (docs/distributed.md).
    Three of the four networks are already on file, so one candidate runs: through the CLI, as a user's would."""
    import json

    import search_evaluators as ev
    from conftest import run_archc

    from archc.search import candidates, grid

    search = dict(budget=2.0, step=0.1, tolerance=0.1)
    results = tmp_path / "r.jsonl"
    grid(TINY, ev.closeness, results=results, **search)
    found, _ = candidates(TINY, **search)
    networks = [c.network for c in found]
    alone = next(c for c in found if networks.count(c.network) == 1)
    kept = [line for line in results.read_text().splitlines() if json.loads(line)["key"] != alone.key]
    results.write_text("\n".join(kept) + "\n")
    result = run_archc("search", TINY, "--evaluate", "tests.ddp_candidate:evaluate", "--step", "0.1", "--tolerance", "0.1",
                       "--results", results, "--json")
    assert result.returncode == 0, result.stderr
    assert "1 distinct networks to evaluate" in result.stderr
    scored = {json.loads(line)["key"]: json.loads(line)["result"]["score"] for line in results.read_text().splitlines()}
    assert len(scored) == 12 and scored[alone.key] == 2  # both ranks trained and ended with the same parameters
    assert json.loads(result.stdout)["winner"] == {"alpha": alone.alpha, "beta": alone.beta, "gamma": alone.gamma,
                                                   "macs_ratio": alone.macs_ratio, "score": 2.0}
