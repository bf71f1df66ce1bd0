"""Scaling curves and the compound-coefficient grid search (the paper's step 1)."""

from concurrent.futures import ProcessPoolExecutor

import pytest

import archc
import search_evaluators as ev
from archc.search import candidates, curve, grid
from conftest import FIXTURES, run_archc

TINY = str(FIXTURES / "tiny3d.yaml")


def test_scale_reports_the_reference_figures(tmp_path):
    result = run_archc("scale", "efficientnet_b0", "--phi-range", "0:4", "-o", tmp_path / "curve.png")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[3:8]]
    # reference-numbers.md: B0 5,288,548 and B0 scaled by phi 1..4.
    assert [r[4] for r in rows] == ["5,288,548", "9,109,994", "12,255,408", "16,350,296", "25,916,448"]
    assert "constraint alpha * beta**2 * gamma**2 ≈ budget" in result.stdout
    assert (tmp_path / "curve.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_macs_grow_about_two_fold_per_unit_phi():
    points = curve("efficientnet_b0", [0, 1, 2, 3, 4, 5])
    steps = [b.macs / a.macs for a, b in zip(points, points[1:])]
    # From phi 1 on each step is close to the formula's 1.92; phi 0 -> 1 is 2.57 because ceil(1 * 1.2) = 2
    # doubles B0's two one-block stages (docs/scaling.md).
    assert steps[0] == pytest.approx(2.57, abs=0.01)
    assert all(1.7 < s < 2.1 for s in steps[1:]), steps


def test_3d_constraint_counts_resolution_three_times():
    result = run_archc("scale", "efficientnet_b0", "--dims", "3", "--phi-range", "0:1")
    assert "gamma**3" in result.stdout and "gives 2.208 by the formula" in result.stdout


def _expected(budget, step, tolerance, **args):
    """The constraint, checked point by point: what the grid must visit."""
    base = archc.analyze(archc.lower(TINY, phi=0, **args)).macs
    expected = set()
    values = [round(1 + i * step, 10) for i in range(int(1.5 / step) + 1)]
    for a in values:
        for b in values:
            for g in values:
                plan = archc.lower(TINY, phi=1, overrides={"scaling.alpha": a, "scaling.beta": b, "scaling.gamma": g}, **args)
                if abs(archc.analyze(plan).macs / base - budget) <= tolerance * budget:
                    expected.add((a, b, g))
    return expected


def test_grid_visits_exactly_the_constrained_candidates_and_ranks_them():
    ev.CALLS.clear()
    ranked = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1)
    assert {(r.alpha, r.beta, r.gamma) for r in ranked} == _expected(2.0, 0.1, 0.1)
    found, _ = candidates(TINY, budget=2.0, step=0.1, tolerance=0.1)
    networks = {c.network for c in found}
    assert len(ev.CALLS) == len(networks) < len(ranked)  # each distinct network evaluated once, not each triple
    assert len(set(ev.CALLS)) == len(ev.CALLS)
    scores = [r.score for r in ranked]
    assert scores == sorted(scores, reverse=True)
    assert all(abs(r.macs_ratio - 2.0) <= 0.2 for r in ranked)
    assert ranked[0].scaling_block().startswith(f"scaling:\n  alpha: {ranked[0].alpha:g}\n")


def test_interrupted_search_resumes_without_repeating(tmp_path):
    results = tmp_path / "results.jsonl"
    ev.CALLS.clear()
    with pytest.raises(ev.Interrupted):
        grid(TINY, ev.interrupted_after_one, budget=2.0, step=0.1, tolerance=0.1, results=results)
    recorded = [line for line in results.read_text().splitlines()]
    assert recorded  # what finished before the interruption is on disk
    ev.CALLS.clear()
    resumed = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results)
    found, _ = candidates(TINY, budget=2.0, step=0.1, tolerance=0.1)
    import json

    finished = {json.loads(line)["key"] for line in recorded}
    assert len(ev.CALLS) == len({c.network for c in found if c.key not in finished})  # only what had not finished
    ev.CALLS.clear()
    assert resumed == grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1)


def test_process_pool_gives_the_same_table():
    serial = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1)
    with ProcessPoolExecutor(2) as pool:
        parallel = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, executor=pool)
    assert parallel == serial


def test_collapsing_candidates_are_skipped_with_a_reason():
    found, skipped = candidates(TINY, budget=2.0, step=0.1, tolerance=0.1, resolution=8)
    assert not found and skipped
    assert all("smaller than" in reason or "shrunk" in reason for _, reason in skipped)
    messages = []
    assert grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, resolution=8, progress=messages.append) == []
    assert messages[0].startswith("skipped alpha=")


def test_search_cli(tmp_path):
    result = run_archc("search", TINY, "--evaluate", "search_evaluators:closeness", "--step", "0.1", "--tolerance", "0.1",
                       "--workers", "2", "--results", tmp_path / "r.jsonl", cwd=FIXTURES.parent)
    assert result.returncode == 0, result.stderr
    assert "# paste into the spec:\nscaling:\n  alpha: " in result.stdout
    assert "candidates under alpha * beta**2 * gamma**3 ≈ budget = 2 (±10%)" in result.stderr
    bad = run_archc("search", TINY, "--evaluate", "nowhere:nothing")
    assert bad.returncode == 2 and "--evaluate: cannot import 'nowhere:nothing'" in bad.stderr
