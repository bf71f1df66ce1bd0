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
