import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
B0 = ROOT / "specs" / "efficientnet_b0.yaml"
FIXTURES = Path(__file__).resolve().parent / "fixtures"
TINY3D = FIXTURES / "tiny3d.yaml"  # a small 3D network for tests that build, train or export


def needs_dot() -> pytest.MarkDecorator:
    """Skip a test of image diagrams where Graphviz's `dot` is not installed, unless ARCHC_REQUIRE_DOT=1
    (set by .ci/run, which installs it): there a missing `dot` fails the test instead of hiding it."""
    missing = shutil.which("dot") is None and os.environ.get("ARCHC_REQUIRE_DOT") != "1"
    return pytest.mark.skipif(missing, reason="Graphviz's `dot` is not installed (apt-get install graphviz)")


def browser_missing() -> str | None:
    """Why the browser tests cannot run here (no Chromium, no chromedriver, no selenium), or None. With
    ARCHC_REQUIRE_BROWSER=1 (set by .ci/run, which installs Debian's chromium and chromium-driver) the tests run
    anyway and fail on what is missing, instead of hiding it behind a skip."""
    if os.environ.get("ARCHC_REQUIRE_BROWSER") == "1":
        return None
    if shutil.which("chromium") is None or shutil.which("chromedriver") is None:
        return "Chromium is not installed (apt-get install chromium chromium-driver)"
    try:
        import selenium  # noqa: F401
    except ImportError:
        return "selenium is not installed (pip install -e '.[dev]')"
    return None


@pytest.fixture
def one_thread():
    """Small inputs run faster on one thread than on threads that wait for each other."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


def run_archc(*args: str, cwd: Path = ROOT) -> subprocess.CompletedProcess:
    """Run the CLI in a fresh process, as a user would."""
    return subprocess.run([sys.executable, "-m", "archc", *map(str, args)], cwd=cwd, capture_output=True, text=True, timeout=300)


def run_python(code: str, *args: str, **kwargs) -> subprocess.CompletedProcess:
    """Run ``code`` in a fresh interpreter from the checkout's root (a clean import state, its own process)."""
    return subprocess.run([sys.executable, "-c", code, *map(str, args)], cwd=ROOT, capture_output=True, text=True, timeout=300, **kwargs)


def output_shapes(model, paths, x) -> dict:
    """Run ``x`` through ``model`` (no grad) and measure the per-sample output shape of each submodule in ``paths``."""
    import torch

    modules, shapes = dict(model.named_modules()), {}

    def recorder(path):
        def hook(module, inputs, output):
            shapes.setdefault(path, tuple(output.shape[1:]))  # returns None: the output stays as it is
        return hook

    hooks = [modules[path].register_forward_hook(recorder(path)) for path in paths]
    try:
        with torch.no_grad():
            model(x)
    finally:
        for hook in hooks:
            hook.remove()
    return shapes


def saved_for_backward(model, x, exclude=()):
    """(bytes of every tensor storage autograd keeps for backward, except the parameters' and ``exclude``'s; the output)."""
    import torch

    skip = {p.untyped_storage().data_ptr() for p in model.parameters()} | {t.untyped_storage().data_ptr() for t in exclude}
    kept = {}

    def pack(t):
        storage = t.untyped_storage()
        if storage.data_ptr() not in skip:
            kept[storage.data_ptr()] = storage.nbytes()
        return t

    with torch.autograd.graph.saved_tensors_hooks(pack, lambda t: t):
        out = model(x)
    return sum(kept.values()), out


def calibrate_norms(model, input_shape):
    """Give a fresh model the batch-norm statistics of real data, as trained weights have. Without them the
    signal fades through the depth (eval-mode norms with unit variance), the last feature map is constant, and
    a comparison could not tell one padding, or one placement of a norm, from another."""
    import torch

    generator = torch.Generator().manual_seed(0)
    for m in model.modules():
        if isinstance(m, torch.nn.modules.batchnorm._BatchNorm):
            m.reset_running_stats()
            m.momentum = None  # a plain average over the calibration batches
            m.weight.data.uniform_(0.5, 1.5, generator=generator)
            m.bias.data.uniform_(-0.2, 0.2, generator=generator)
    model.train()
    # Drop path draws its masks from the global generator: seeded, the statistics (and every comparison made with
    # them) are the same whichever tests ran before.
    with torch.no_grad(), torch.random.fork_rng():
        torch.manual_seed(0)
        for _ in range(2):
            model(torch.randn(2, *input_shape, generator=generator))
    return model.eval()


def timm_parameter_count_equals(name: str, pinned: int):
    """Assert archc's Plan of ``name`` has the parameters of timm's module of that name, and the pinned figure; return
    both, timm's laid out on the meta device (no memory: efficientnet_l2 has 480M)."""
    import timm
    import torch

    import archc

    plan = archc.lower(name)
    with torch.device("meta"):
        peer = timm.create_model(name)
    assert archc.analyze(plan).params == sum(p.numel() for p in peer.parameters()) == pinned
    return plan, peer


def timm_peer(name: str, size: int):
    """timm's real module ``name`` with seeded random weights and the batch-norm statistics of random size x size
    images (:func:`calibrate_norms`): a peer whose outputs an import must reproduce."""
    import timm
    import torch

    with torch.random.fork_rng():
        torch.manual_seed(0)
        return calibrate_norms(timm.create_model(name), (3, size, size))


@pytest.fixture(scope="module")
def calibrated_peer():
    """:func:`timm_peer` made once per test file and name: the tests of a file that compare outputs and inflation
    with the same peer share it (none of them changes it)."""
    peers = {}

    def peer(name: str, size: int = 64):
        if (name, size) not in peers:
            peers[name, size] = timm_peer(name, size)
        return peers[name, size]

    return peer


def assert_same_outputs(model, peer, size, batch: int = 2, seed: int = 1) -> None:
    """``model`` computes what ``peer`` computes on random batch x 3 x size x size images (``size`` an int, or (height,
    width) for an odd, non-square input) within 1e-4, and the peer's
    outputs vary (a constant output would hide a wrong padding or norm). The model runs module by module
    (``set_fast_paths(False)``): the peer's ops in the peer's order, so that nothing but a wrong weight or layer
    can differ; a calibrated random network's activations grow through the stages and would amplify the fast
    paths' rounding (tests/test_fusion.py compares those with the modules)."""
    import torch

    x = torch.randn(batch, 3, *((size, size) if isinstance(size, int) else size), generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        theirs = peer(x)
        assert theirs.std() > 1e-2
        torch.testing.assert_close(model.set_fast_paths(False)(x), theirs, atol=1e-4, rtol=1e-4)


def assert_inflation_keeps_2d(volume, peer, size: int, depth: int, batch: int = 2, seed: int = 1) -> None:
    """The image repeated along depth: centre-inflated 3D weights give the 2D network's output (symmetric padding)."""
    import torch

    x = torch.randn(batch, 3, size, size, generator=torch.Generator().manual_seed(seed))
    with torch.no_grad():
        flat = peer(x)
        torch.testing.assert_close(volume.set_fast_paths(False)(x.unsqueeze(2).expand(batch, 3, depth, size, size)), flat, atol=1e-4, rtol=1e-4)


def train_until(model, x, y, score, *, target: float, max_steps: int, batch: int) -> tuple[float, int]:
    """AdamW (lr 3e-3, no weight decay) on the cross-entropy of random batches of ``(x, y)``; every 10 steps
    ``score()`` (which may put the model in eval mode) is taken, until its best reaches ``target`` or ``max_steps``
    pass. Returns the best score and the steps taken."""
    import torch
    import torch.nn.functional as F

    optimiser = torch.optim.AdamW(model.parameters(), lr=3e-3, weight_decay=0.0)
    best, steps = 0.0, 0
    while steps < max_steps and best < target:
        model.train()
        chosen = torch.randperm(len(x))[:batch]
        loss = F.cross_entropy(model(x[chosen]), y[chosen])
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        steps += 1
        if steps % 10 == 0:
            best = max(best, score())
    return best, steps


class _Exploit:
    """Unpickling this runs a shell command that creates ``marker``: a file that must never be loaded."""

    def __init__(self, marker):
        self.marker = marker

    def __reduce__(self):
        import os

        return (os.system, (f"touch {self.marker}",))


def write_evil_pickle(path, marker, wrap=lambda payload: payload) -> None:
    """A pickle crafted to run code when loaded (``wrap`` places the payload, e.g. inside a state_dict)."""
    import pickle

    Path(path).write_bytes(pickle.dumps(wrap(_Exploit(marker))))


def module_params(plan) -> int:
    """Parameters of the emitted module, counted on the meta device (no memory, no init)."""
    from archc.emit.network import instantiate

    return sum(p.numel() for p in instantiate(plan).parameters())


@pytest.fixture(scope="session")
def b0_spec():
    import archc

    return archc.read(B0)


def shapes_and_masks(n: int, size=(32, 32, 32), seed: int = 0, spacing=(1.0, 1.0, 1.0), min_radius: float = 4.0):
    """Volumes with a sphere and a cube of random size (radius ``min_radius`` to ``min_radius + 4``) and place, drawn in
    millimetres on voxels of ``spacing``, in noise as strong as half the contrast (a voxel-wise threshold gets about
    one voxel in six wrong), and their masks: the segmentation learning checks' data."""
    import torch

    g = torch.Generator().manual_seed(seed)
    z, y, x = torch.meshgrid(*(torch.arange(n_, dtype=torch.float32) * mm for n_, mm in zip(size, spacing)), indexing="ij")
    volumes, masks = [], []
    for _ in range(n):
        mask = torch.zeros(size, dtype=torch.bool)
        for shape in ("sphere", "cube"):
            radius = min_radius + 4 * torch.rand((), generator=g)
            c = 8 + 16 * torch.rand(3, generator=g)
            if shape == "sphere":
                mask |= (z - c[0]) ** 2 + (y - c[1]) ** 2 + (x - c[2]) ** 2 <= radius**2
            else:
                h = 0.85 * radius
                mask |= ((z - c[0]).abs() <= h) & ((y - c[1]).abs() <= h) & ((x - c[2]).abs() <= h)
        volumes.append(mask.float() + 0.5 * torch.randn(size, generator=g))
        masks.append(mask.long())
    return torch.stack(volumes)[:, None], torch.stack(masks)
