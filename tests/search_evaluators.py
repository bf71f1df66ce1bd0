"""Deterministic evaluators for the search tests; importable, so process-pool workers can unpickle them."""

CALLS = []


def closeness(model, resolution) -> float:
    """A stand-in for validation accuracy: prefers depth 1.3, width 1.1 and a 20-voxel input."""
    s = model.plan.scaling
    CALLS.append((round(s.depth, 6), round(s.width, 6), tuple(resolution)))
    return -((s.depth - 1.3) ** 2 + (s.width - 1.1) ** 2 + ((resolution[0] - 20) / 20) ** 2)


class Interrupted(Exception):
    pass


def interrupted_after_one(model, resolution) -> float:
    if CALLS:
        raise Interrupted
    return closeness(model, resolution)


class Broken(Exception):
    pass


def nan_score(model, resolution) -> float:
    return float("nan")


def infinite_score(model, resolution) -> float:
    return float("inf")


def text_score(model, resolution):
    return "0.5"


def no_score(model, resolution):
    return None


def broken_after_one(model, resolution) -> float:
    """Fails on its second network, as a training run that crashes would."""
    if CALLS:
        raise Broken("out of patience\nsecond line of detail")
    return closeness(model, resolution)


def constant(model, resolution) -> float:
    """Every network scores the same: an evaluator that cannot tell them apart."""
    return 0.5


def almost_constant(model, resolution) -> float:
    """Equal scores but for a float sum's rounding."""
    return 0.1 + 0.2 if model.plan.scaling.depth > 1.5 else 0.3


# Evaluators for the engines' tests (tests/test_search_engines.py): they run on Dask, Ray and submitit's workers.

def key_of(model) -> str:
    """The candidate's key as in the results file: at phi = 1, depth, width and resolution scale by alpha, beta, gamma."""
    s = model.plan.scaling
    return f"{s.depth:.4f},{s.width:.4f},{s.resolution:.4f}"


class DiesOnce:
    """Scores like ``closeness``, but the first candidate to arrive kills its own worker process, once: the marker
    file, created atomically, records which candidate it was (a worker lost mid-candidate, as a preempted node)."""

    __name__ = "dies_once"

    def __init__(self, marker: str):
        self.marker = marker

    def __call__(self, model, resolution) -> float:
        import os

        try:
            descriptor = os.open(self.marker, os.O_CREAT | os.O_EXCL | os.O_WRONLY)
        except FileExistsError:
            return closeness(model, resolution)
        os.write(descriptor, key_of(model).encode())
        os.close(descriptor)
        os._exit(1)  # no cleanup, no exception: the process is gone, as after a SIGKILL


def always_broken(model, resolution) -> float:
    raise Broken("out of patience\nsecond line of detail")


def logged(model, resolution) -> float:
    """``closeness``, after appending the candidate's key to the file named by ARCHC_SEARCH_LOG and waiting
    ARCHC_SEARCH_SLEEP seconds (a training run that takes a while): which candidates ran, and how often."""
    import os
    import time

    with open(os.environ["ARCHC_SEARCH_LOG"], "a") as log:
        log.write(key_of(model) + "\n")
    time.sleep(float(os.environ.get("ARCHC_SEARCH_SLEEP", "0")))
    return closeness(model, resolution)


def in_plane_size(model, resolution) -> float:
    """Prefers the largest in-plane size (axis 1): one winner among networks that differ in it."""
    return float(resolution[1])


def first_stage_blocks(model, resolution) -> float:
    """Scores the first stage's block count at depth 1 (else 0): shows which spec the worker built."""
    return float(len(model.plan.stages[0].blocks)) if model.plan.scaling.depth == 1 else 0.0
