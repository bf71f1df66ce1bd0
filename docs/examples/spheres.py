"""A small volumetric task for the worked search example in docs/scaling.md: spheres against cubes.

    PYTHONPATH=docs/examples archc search tests/fixtures/tiny3d.yaml --evaluate spheres:evaluate --step 0.1 --tolerance 0.1 --workers 2

``evaluate(model, resolution)`` trains the candidate briefly on synthetic volumes at its own resolution and
returns its accuracy on held-out volumes (higher is better). Deterministic for a given candidate.
"""

import torch
import torch.nn.functional as F


def volumes(n: int, size: tuple[int, int, int], seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    axes = [torch.linspace(0, 1, s) for s in size]
    z, y, x = torch.meshgrid(*axes, indexing="ij")
    data, labels = [], []
    for i in range(n):
        label = i % 2
        r = 0.12 + 0.15 * torch.rand((), generator=g)
        c = 0.3 + 0.4 * torch.rand(3, generator=g)
        if label == 0:
            inside = (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= r**2
        else:
            h = 0.85 * r
            inside = ((z - c[0]).abs() <= h) & ((y - c[1]).abs() <= h) & ((x - c[2]).abs() <= h)
        data.append(inside.float() + 0.1 * torch.randn(size, generator=g))
        labels.append(label)
    return torch.stack(data)[:, None], torch.tensor(labels)


def evaluate(model: torch.nn.Module, resolution: tuple[int, ...], steps: int = 100) -> float:
    torch.set_num_threads(1)  # one core per worker
    torch.manual_seed(0)
    x, y = volumes(64, resolution, seed=0)
    test_x, test_y = volumes(64, resolution, seed=1)
    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3)
    for _ in range(steps):
        batch = torch.randperm(64)[:16]
        model.train()
        loss = F.cross_entropy(model(x[batch]), y[batch])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    model.eval()
    with torch.no_grad():
        return (model(test_x).argmax(1) == test_y).float().mean().item()
