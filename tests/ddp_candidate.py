"""A search candidate that trains on several processes: the evaluator (``--evaluate tests.ddp_candidate:evaluate``)
saves the candidate's model and starts ``torchrun`` with two CPU ranks (gloo) on this file, as a multi-GPU
candidate inside a SLURM job would with nccl (docs/distributed.md). The score is the number of ranks whose
parameters still agree after training: 2 when DistributedDataParallel kept them in step."""

import json
import os
import subprocess
import sys
import tempfile

RANKS = 2


def evaluate(model, resolution) -> float:
    import archc

    with tempfile.TemporaryDirectory() as folder:
        archc.save(model, os.path.join(folder, "candidate.safetensors"))
        run = subprocess.run([sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={RANKS}", __file__,
                              os.path.join(folder, "candidate.safetensors"), os.path.join(folder, "score.json")],
                             env={**os.environ, "OMP_NUM_THREADS": "1"}, capture_output=True, text=True)
        if run.returncode:  # the search reports this line with the candidate
            errors = [line for line in run.stderr.splitlines() if "Error" in line] or run.stderr.splitlines()[-1:]
            raise RuntimeError(f"torchrun exited with {run.returncode}: {' | '.join(errors[-3:])}")
        with open(os.path.join(folder, "score.json")) as f:
            return json.load(f)["ranks_in_step"]


def train(saved: str, score: str) -> None:
    """One rank: two SGD steps on its own data under DDP, then count the ranks whose parameters equal rank 0's."""
    import torch
    import torch.distributed as dist
    from torch.nn.parallel import DistributedDataParallel

    import archc

    dist.init_process_group("gloo")
    torch.set_num_threads(1)
    rank = dist.get_rank()
    model = archc.load(saved)  # the same weights on every rank
    ddp = DistributedDataParallel(model)
    optimiser = torch.optim.SGD(ddp.parameters(), lr=0.1)
    generator = torch.Generator().manual_seed(100 + rank)
    for _ in range(2):
        x = torch.randn(2, model.plan.in_channels, *model.plan.resolution, generator=generator)
        y = torch.randint(0, model.plan.head.num_classes, (2,), generator=generator)
        optimiser.zero_grad()
        torch.nn.functional.cross_entropy(ddp(x), y).backward()
        optimiser.step()
    flat = torch.cat([p.detach().flatten() for p in model.parameters()])
    gathered = [torch.empty_like(flat) for _ in range(dist.get_world_size())]
    dist.all_gather(gathered, flat)
    if rank == 0:
        with open(score, "w") as f:
            json.dump({"ranks_in_step": sum(torch.equal(g, flat) for g in gathered)}, f)
    dist.destroy_process_group()


if __name__ == "__main__":
    # torchrun starts this file as a script: make the checkout's archc importable as it is for the evaluator
    sys.path.insert(0, os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    train(sys.argv[1], sys.argv[2])
