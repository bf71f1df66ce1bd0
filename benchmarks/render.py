"""How long drawing takes, without the `dot` layout step: python benchmarks/render.py

Target (issue: archc render): EfficientNet-B7 at block detail (55 blocks) in under a second.
"""

import statistics
import time

import archc
from archc.diagram import to_dot


def main() -> None:
    for preset, detail in [("b0", "stage"), ("b7", "block"), ("b7", "layer")]:
        plan = archc.lower("efficientnet_b0", preset=preset)
        times = []
        for _ in range(20):
            start = time.perf_counter()
            _ = to_dot(plan, detail).source  # the DOT text, as render writes it
            times.append(time.perf_counter() - start)
        print(f"{preset} {detail:5s}: median {statistics.median(times) * 1e3:7.2f} ms over {len(times)} runs")


if __name__ == "__main__":
    main()
