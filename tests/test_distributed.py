"""The emitted modules under PyTorch's own distributed engine: two CPU processes, gloo, DDP."""

import os
import socket
from pathlib import Path

import torch
import torch.distributed as dist
import torch.multiprocessing as mp
from torch.nn.parallel import DistributedDataParallel

import archc

TINY = str(Path(__file__).parent / "fixtures" / "tiny3d.yaml")


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


def test_ddp_keeps_ranks_identical(tmp_path):
    mp.spawn(_train, args=(2, _free_port(), str(tmp_path)), nprocs=2, join=True)
    ranks = [torch.load(tmp_path / f"rank{r}.pt") for r in range(2)]
    start = dict(archc.load(TINY, resolution=16, seed=0).named_parameters())
    assert ranks[0].keys() == ranks[1].keys() == start.keys()
    assert all(torch.equal(ranks[0][k], ranks[1][k]) for k in start)  # gradients were averaged
    assert any(not torch.equal(ranks[0][k], start[k].detach()) for k in start)  # and training happened


def test_sync_bn():
    model = archc.load(TINY, seed=0, sync_bn=True)
    norms = [type(m).__name__ for m in model.modules() if isinstance(m, torch.nn.modules.batchnorm._BatchNorm)]
    assert norms and set(norms) == {"SyncBatchNorm"}
    assert list(model.state_dict()) == list(archc.load(TINY, seed=0).state_dict())
    assert model.plan.name == "tiny3d"
