"""Each depthwise conv shape of EfficientNet-B0, plain op against the rewritten backward (archc.emit.depthwise):

    python benchmarks/depthwise.py          # 3D at 2x64³ input (the shapes of the 3D b0 benchmark)
    python benchmarks/depthwise.py --dims 2 # 2D at 8x224²

Each row is a forward and backward (input and weight gradients) of one conv, the two timed alternately in this
process, medians of the per-pair ratios (below 1: the rewrite is faster). ``fast_backward`` in
archc/emit/depthwise.py uses the rewrite where these measurements say it wins.
"""

import argparse
import sys
from pathlib import Path

import torch
import torch.nn.functional as F

sys.path.insert(0, str(Path(__file__).resolve().parent))
from peers import ratio  # noqa: E402

from archc.emit.depthwise import DepthwiseConv  # noqa: E402

# (channels, input size per axis at the b0 benchmark's resolution, kernel, stride): every depthwise conv of b0
# (repeated blocks once), at 64³ (3D) or 224² (2D) input.
SHAPES = ((32, 32, 3, 1), (96, 32, 3, 2), (144, 16, 3, 1), (144, 16, 5, 2), (240, 8, 5, 1), (240, 8, 3, 2),
          (480, 4, 3, 1), (480, 4, 5, 1), (672, 4, 5, 1), (672, 4, 5, 2), (1152, 2, 5, 1), (1152, 2, 3, 1))
CONV = {1: F.conv1d, 2: F.conv2d, 3: F.conv3d}


def measure(dims: int, batch: int, channels: int, size: int, kernel: int, stride: int, memory_format) -> float:
    """Rewritten / plain time of one conv's forward and backward."""
    x = torch.randn(batch, channels, *(size,) * dims).contiguous(memory_format=memory_format).requires_grad_()
    w = torch.randn(channels, 1, *(kernel,) * dims).contiguous(memory_format=memory_format).requires_grad_()
    pads, strides = (kernel // 2,) * dims, (stride,) * dims
    grad = torch.randn_like(CONV[dims](x, w, None, strides, pads, 1, channels))

    def plain():
        torch.autograd.grad(CONV[dims](x, w, None, strides, pads, 1, channels), (x, w), grad)

    def rewritten():
        torch.autograd.grad(DepthwiseConv.apply(x, w, None, strides, pads), (x, w), grad)

    return ratio(rewritten, plain, 7)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dims", type=int, default=3, choices=(1, 2, 3))
    args = parser.parse_args()
    dims = args.dims
    batch, scale = (2, 1) if dims == 3 else (8, 7 if dims == 2 else 32)  # 2D: 224² is 3.5x 64; 1D: long signals
    formats = [torch.contiguous_format] + ([{2: torch.channels_last, 3: torch.channels_last_3d}[dims]] if dims > 1 else [])
    print(f"| channels | size | kernel | stride | {' | '.join(str(f).split('.')[-1] for f in formats)} |")
    print(f"|---|---|---|---|{'---|' * len(formats)}")
    for channels, size, kernel, stride in SHAPES:
        size = size * scale // 2 if dims != 3 else size
        cells = [f"{measure(dims, batch, channels, size, kernel, stride, memory_format):.2f}" for memory_format in formats]
        print(f"| {channels} | {size} | {kernel} | {stride} | {' | '.join(cells)} |", flush=True)


if __name__ == "__main__":
    main()
