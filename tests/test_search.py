"""Scaling curves and the compound-coefficient grid search (the paper's step 1)."""

import contextlib
import json
import re
from concurrent.futures import ProcessPoolExecutor

import pytest
import search_evaluators as ev
from conftest import TINY3D, run_archc
from reference_figures import PHI_PARAMS, PRESETS

import archc
from archc.errors import ArchcError
from archc.search import candidates, curve, grid

TINY = str(TINY3D)


def test_scale_reports_the_reference_figures(tmp_path):
    result = run_archc("scale", "efficientnet_b0", "--phi-range", "0:4", "-o", tmp_path / "curve.png")
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[3:8]]
    # B0 and B0 scaled by phi 1..4.
    assert [r[4] for r in rows] == [f"{params:,}" for params in (PRESETS["b0"][0], *PHI_PARAMS.values())]
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


@pytest.mark.slow
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
    with pytest.raises(ArchcError, match="run again to resume") as info:
        grid(TINY, ev.interrupted_after_one, budget=2.0, step=0.1, tolerance=0.1, results=results)
    assert isinstance(info.value.__cause__, ev.Interrupted)
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


@pytest.mark.slow
def test_collapsing_candidates_are_skipped_with_a_reason():
    found, skipped = candidates(TINY, budget=2.0, step=0.1, tolerance=0.1, resolution=8)
    assert not found and skipped
    assert all("smaller than" in reason or "shrunk" in reason for _, reason in skipped)
    messages = []
    assert grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, resolution=8, progress=messages.append) == []
    assert messages[0].startswith("skipped alpha=")


def test_search_cli(tmp_path):
    # From the checkout's root, so the subprocess imports this checkout's archc and the evaluators as tests.*.
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:closeness", "--step", "0.1", "--tolerance", "0.1",
                       "--workers", "2", "--results", tmp_path / "r.jsonl")
    assert result.returncode == 0, result.stderr
    assert "# paste into the spec:\nscaling:\n  alpha: " in result.stdout
    assert "candidates under alpha * beta**2 * gamma**3 ≈ budget = 2 (±10%)" in result.stderr
    bad = run_archc("search", TINY, "--evaluate", "nowhere:nothing")
    assert bad.returncode == 2 and "--evaluate: cannot import 'nowhere:nothing'" in bad.stderr


# Hostile input: every refusal is an archc error (one line from the CLI), found before any evaluation where it can be.

@pytest.mark.parametrize(
    "args, message",
    [
        (dict(step=1e-9), "step 1e-09 with budget 2 and tolerance 0.1 needs 1.2e+09 values per coefficient; the grid takes at most 400"),
        (dict(budget=1e300), "needs 1.1e+301 values per coefficient"),
        (dict(tolerance=1e300), "needs 2e+301 values per coefficient"),
        (dict(step=0.004), "puts more than 50,000 grid points under the budget; the search measures at most 50,000"),
    ],
)
def test_a_grid_too_large_is_refused_before_any_work(args, message):
    from archc.search import MAX_POINTS, MAX_STEPS

    assert (MAX_STEPS, MAX_POINTS) == (400, 50_000)
    ev.CALLS.clear()
    with pytest.raises(archc.ArgumentError, match=re.escape(message)):
        grid(TINY, ev.closeness, **{**dict(budget=2.0, step=0.1, tolerance=0.1), **args})
    assert not ev.CALLS


def test_search_cli_refuses_a_grid_too_large():
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:closeness", "--step", "1e-9")
    assert result.returncode == 1
    assert result.stderr.startswith("archc: error: ") and "values per coefficient" in result.stderr
    assert "Traceback" not in result.stderr


@pytest.mark.parametrize("evaluate, shown", [(ev.nan_score, "nan"), (ev.infinite_score, "inf"), (ev.text_score, "'0.5'"),
                                             (ev.no_score, "None")])
def test_scores_must_be_finite_numbers(tmp_path, evaluate, shown):
    results = tmp_path / "r.jsonl"
    with pytest.raises(ArchcError, match=rf"alpha=[\d.]+ beta=[\d.]+ gamma=[\d.]+: .*score {re.escape(shown)}.*expected a finite number"):
        grid(TINY, evaluate, budget=2.0, step=0.1, tolerance=0.1, results=results)
    assert not results.exists() or "NaN" not in results.read_text()


def test_search_cli_refuses_a_nan_score():
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:nan_score", "--step", "0.1", "--tolerance", "0.1")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("archc: error:")]
    assert len(errors) == 1 and "alpha=" in errors[0] and "score nan" in errors[0]
    assert "paste into the spec" not in result.stdout and "Traceback" not in result.stderr


def test_a_failing_evaluator_stops_with_the_candidate_and_keeps_the_results(tmp_path):
    results = tmp_path / "r.jsonl"
    ev.CALLS.clear()
    with pytest.raises(ArchcError, match=r"evaluating alpha=[\d.]+ beta=[\d.]+ gamma=[\d.]+ failed: Broken: out of patience; .* run again to resume") as info:
        grid(TINY, ev.broken_after_one, budget=2.0, step=0.1, tolerance=0.1, results=results)
    assert isinstance(info.value.__cause__, ev.Broken)
    assert "second line" not in str(info.value)
    kept = results.read_text().splitlines()
    assert kept and all(json.loads(line)["result"]["score"] == json.loads(line)["result"]["score"] for line in kept)  # no NaN
    ev.CALLS.clear()
    assert grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results) == \
        grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1)


def test_search_cli_reports_a_failing_evaluator_in_one_line(tmp_path):
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:broken_after_one", "--step", "0.1",
                       "--tolerance", "0.1", "--results", tmp_path / "r.jsonl")
    assert result.returncode == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("archc: error:")]
    assert len(errors) == 1 and "Broken: out of patience" in errors[0] and "Traceback" not in result.stderr


def _good_line(**score) -> str:
    record = {"alpha": 1.1, "beta": 1.0, "gamma": 1.0, "macs_ratio": 2.0, "score": 0.5, **score}
    return json.dumps({"key": "1.1000,1.0000,1.0000", "result": record})


@pytest.mark.parametrize(
    "content, message",
    [
        (None, "is a directory"),
        (b"\xff\xfe not text\n", ":1: not UTF-8 text"),
        (("[" * 100_000 + "]" * 100_000 + "\n").encode(), ":1: not a search results line"),
        ((_good_line(score="0.5") + "\n").encode(), ":1: alpha=1.1 beta=1 gamma=1: score '0.5'"),
        ((_good_line(score=None) + "\n").encode(), ":1: alpha=1.1 beta=1 gamma=1: score None"),
        ((_good_line().replace("0.5", "NaN") + "\n").encode(), ":1: alpha=1.1 beta=1 gamma=1: score nan"),
        ((_good_line() + "\n" + _good_line().replace("0.5", "-Infinity") + "\n").encode(), ":2: alpha=1.1 beta=1 gamma=1: score -inf"),
    ],
)
def test_bad_results_files_are_refused_before_any_evaluation(tmp_path, content, message):
    results = tmp_path / "r.jsonl"
    if content is None:
        results.mkdir()
    else:
        results.write_bytes(content)
    ev.CALLS.clear()
    with pytest.raises(ArchcError, match=re.escape(message)):
        grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results)
    assert not ev.CALLS


def test_results_file_in_a_missing_directory_is_refused_before_any_evaluation(tmp_path):
    ev.CALLS.clear()
    with pytest.raises(ArchcError, match="does not exist"):
        grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=tmp_path / "no" / "r.jsonl")
    assert not ev.CALLS and not (tmp_path / "no").exists()


def test_a_results_line_cut_off_by_a_killed_run_is_dropped_with_a_note(tmp_path):
    results = tmp_path / "r.jsonl"
    full = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results)
    lines = results.read_text().splitlines(keepends=True)
    assert len(lines) >= 2
    results.write_text("".join(lines[:-1]) + lines[-1][:25])  # killed while writing the last line
    messages = []
    ev.CALLS.clear()
    resumed = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results, progress=messages.append)
    found, _ = candidates(TINY, budget=2.0, step=0.1, tolerance=0.1)
    network = {c.key: c.network for c in found}
    cut = json.loads(lines[-1])["key"]
    on_file = any(network[json.loads(line)["key"]] == network[cut] for line in lines[:-1])
    # only the candidate whose line was cut off is done again: by its network's score on file, or by running it
    assert len(ev.CALLS) == (0 if on_file else 1)
    assert {(r.alpha, r.beta, r.gamma) for r in resumed} == {(r.alpha, r.beta, r.gamma) for r in full}
    assert any("cut off" in m and ":" + str(len(lines)) in m for m in messages)
    assert [json.loads(line) for line in results.read_text().splitlines()]  # every line whole again
    assert len(results.read_text().splitlines()) == len(lines)


@pytest.mark.parametrize("name, magic", [("curve.svg", b"<?xml"), ("curve.pdf", b"%PDF"), ("curve.PNG", b"\x89PNG")])
def test_scale_draws_the_format_its_extension_names(tmp_path, name, magic):
    result = run_archc("scale", TINY, "--phi-range", "0:1", "-o", tmp_path / name)
    assert result.returncode == 0, result.stderr
    assert (tmp_path / name).read_bytes().startswith(magic)
    assert [p.name for p in tmp_path.iterdir()] == [name]  # written atomically: no temporary left beside it


def test_scale_refuses_another_extension_before_any_work(tmp_path):
    spec = tmp_path / "spec.yaml"
    spec.write_bytes(open(TINY, "rb").read())
    result = run_archc("scale", spec, "--phi-range", "0:1", "-o", spec)
    assert result.returncode == 2
    assert "archc: error: -o: unknown curve format .yaml; use .png, .svg or .pdf" in result.stderr
    assert result.stdout == ""  # refused before the curve was computed
    assert spec.read_bytes() == open(TINY, "rb").read()


def test_a_whole_last_line_without_its_newline_is_kept_and_ended(tmp_path):
    results = tmp_path / "r.jsonl"
    full = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results)
    results.write_text(results.read_text().rstrip("\n"))
    ev.CALLS.clear()
    assert grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results) == full
    assert not ev.CALLS and results.read_text().endswith("}\n")


def test_evaluate_is_found_in_the_current_folder(tmp_path):
    """`--evaluate train:evaluate` imports ./train.py, as `python -m train` would (the README's example)."""
    (tmp_path / "train.py").write_text("def evaluate(model, resolution):\n    return -abs(model.plan.scaling.depth - 1.3) - resolution[0] - model.plan.scaling.width\n")
    result = run_archc("search", TINY, "--evaluate", "train:evaluate", "--step", "0.1", "--tolerance", "0.1", cwd=tmp_path)
    assert result.returncode == 0, result.stderr
    assert "# paste into the spec:" in result.stdout


# Ties: equal scores do not choose a winner.

def test_equal_scores_of_different_networks_are_a_tie_not_a_winner():
    ranked = grid(TINY, ev.constant, budget=2.0, step=0.1, tolerance=0.1)
    assert len(ranked) == 12 and ranked.tie and ranked.winner is None and len(ranked.top) == 12
    assert ranked.tie_message().startswith(
        "no winner: 12 candidates tie at score 0.5 (equal within a relative 1e-09) and build different networks: "
        "alpha=1 beta=1 gamma=1.2, alpha=1 beta=1.1 gamma=1.2, ")
    # 0.1 + 0.2 and 0.3 differ in the last bit only: a tie too
    assert grid(TINY, ev.almost_constant, budget=2.0, step=0.1, tolerance=0.1).tie


def test_triples_of_one_network_share_its_score_without_a_tie():
    """Rounding makes alpha 1.6 to 2.0 one network here: its score is theirs, and it wins alone."""
    ranked = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1)
    assert not ranked.tie and ranked.winner == ranked[0]
    assert [(r.alpha, r.beta, r.gamma) for r in ranked.top] == [(a, 1.1, 1.0) for a in (1.6, 1.7, 1.8, 1.9, 2.0)]


def test_search_cli_names_a_tie_instead_of_a_block_to_paste(tmp_path):
    args = ("search", TINY, "--evaluate", "tests.search_evaluators:constant", "--step", "0.1", "--tolerance", "0.1")
    result = run_archc(*args)
    assert result.returncode == 0, result.stderr
    assert "paste" not in result.stdout and "scaling:" not in result.stdout
    assert "\n# no winner: 12 candidates tie at score 0.5 (equal within a relative 1e-09) and build different networks: " in result.stdout
    data = json.loads(run_archc(*args, "--json").stdout)
    assert data["winner"] is None and len(data["tie"]) == len(data["ranked"]) == 12 and data["tie_tolerance"] == 1e-9
    assert data["message"].startswith("no winner: 12 candidates tie")
    clear = json.loads(run_archc(*args[:3], "tests.search_evaluators:closeness", *args[4:], "--json").stdout)
    assert clear["tie"] == [] and clear["winner"] == {"alpha": 1.6, "beta": 1.1, "gamma": 1.0, "macs_ratio": clear["ranked"][0]["macs_ratio"],
                                                      "score": -0.45}


# The evaluator's folder: its module is imported from there, and nothing else is.

DECOY = "import pathlib\npathlib.Path(__file__).with_suffix('.ran').write_text('ran')\nraise SystemExit('the decoy ran')\n"


def test_decoys_in_the_evaluators_folder_never_run(tmp_path):
    import os
    import subprocess
    import sys

    from conftest import ROOT

    for name in ("torch", "numpy"):
        (tmp_path / f"{name}.py").write_text(DECOY)
    (tmp_path / "train.py").write_text("def evaluate(model, resolution):\n    return -abs(model.plan.scaling.depth - 1.3) - resolution[0] - model.plan.scaling.width\n")
    # -P: the interpreter itself does not put the folder on the path (as the installed `archc` script does not).
    result = subprocess.run([sys.executable, "-P", "-m", "archc", "search", TINY, "--evaluate", "train:evaluate", "--step", "0.1",
                             "--tolerance", "0.1", "--workers", "2"], cwd=tmp_path, capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stderr
    assert "# paste into the spec:" in result.stdout
    assert sorted(p.name for p in tmp_path.iterdir() if p.suffix == ".ran") == []


def test_the_evaluator_is_imported_without_leaving_its_folder_on_the_path(tmp_path, monkeypatch):
    import sys

    from archc.cli import main

    (tmp_path / "train_here.py").write_text("def evaluate(model, resolution):\n    return model.plan.scaling.width\n")
    monkeypatch.chdir(tmp_path)
    before = list(sys.path)
    assert main(["search", TINY, "--evaluate", "train_here:evaluate", "--step", "0.1", "--tolerance", "0.1"]) == 0
    assert sys.path == before
    sys.modules.pop("train_here", None)


def test_a_network_already_on_file_gives_its_score_to_its_other_triples_without_running_again(tmp_path):
    """A run killed between the lines of one network's triples: the resumed run evaluates nothing for it."""
    results = tmp_path / "r.jsonl"
    full = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results)
    lines = results.read_text().splitlines(keepends=True)
    shared = [line for line in lines if json.loads(line)["result"]["beta"] == 1.1 and json.loads(line)["result"]["gamma"] == 1.0]
    assert len(shared) == 5  # alpha 1.6 to 2.0: one network (test_triples_of_one_network_share_its_score_without_a_tie)
    results.write_text("".join(line for line in lines if line not in shared[1:]))
    ev.CALLS.clear()
    assert grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, results=results) == full
    assert not ev.CALLS
    assert sorted(results.read_text().splitlines()) == sorted(line.rstrip("\n") for line in lines)


def test_scores_within_the_stated_noise_of_the_best_are_a_tie():
    """closeness: the best network scores -0.45 (alpha 1.6 to 2.0, beta 1.1), the next -0.46 (beta 1); 0.02 of noise
    covers both (-0.46 is 0.01 away, within floating-point rounding of it), 0.005 does not."""
    ranked = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, noise=0.02)
    assert ranked.tie and ranked.winner is None
    assert [(r.alpha, r.beta, r.gamma) for r in ranked.top] == [(a, 1.1, 1.0) for a in (1.6, 1.7, 1.8, 1.9, 2.0)] + \
        [(a, 1.0, 1.0) for a in (1.6, 1.7, 1.8, 1.9, 2.0)]
    assert ranked.tie_message().startswith("no winner: 10 candidates score within 0.02 of the best, -0.45 (the stated noise) and build "
                                           "different networks: alpha=1.6 beta=1.1 gamma=1, ")
    assert not ranked.tie_message().endswith("say nothing about the coefficients")
    clear = grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, noise=0.005)
    assert not clear.tie and clear.winner == clear[0]
    with pytest.raises(archc.ArgumentError, match=re.escape("noise must be a finite score difference >= 0 (got -1)")):
        grid(TINY, ev.closeness, budget=2.0, step=0.1, tolerance=0.1, noise=-1)


def test_search_cli_says_when_every_candidate_scores_alike(tmp_path):
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:closeness", "--step", "0.1", "--tolerance", "0.1",
                       "--noise", "10", "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["winner"] is None and data["noise"] == 10 and len(data["tie"]) == 12
    assert data["message"].endswith("(score on more data or train longer, or choose one); that is every candidate: "
                                    "the scores say nothing about the coefficients")


def test_a_per_axis_gamma_is_searched_on_the_axes_it_scales(tmp_path, capsys):
    """gamma [1, 1.1, 1.1] (a thin-slab volume: the slice axis held at 1): the search tries one gamma on axes 1 and 2,
    keeps axis 0 at 1, counts resolution twice in the constraint, and pastes the winner per axis."""
    from archc.search import Result, constraint, evaluate_candidate, gamma_for, scaled_axes

    path = tmp_path / "slab.yaml"
    path.write_text(TINY3D.read_text() + "scaling: {gamma: [1, 1.1, 1.1]}\n")
    spec = archc.read(str(path))
    assert scaled_axes(spec, 3) == 2 and constraint(2) == "alpha * beta**2 * gamma**2 ≈ budget"
    assert gamma_for(spec, 1.3) == (1.0, 1.3, 1.3) and gamma_for(archc.read(TINY), 1.3) == 1.3
    found, _ = candidates(spec, budget=2.0, step=0.2, tolerance=0.1)
    base = archc.lower(spec, phi=0).resolution
    seen = set()
    for c in found:
        resolution = archc.lower(spec, phi=1, overrides={"scaling.alpha": c.alpha, "scaling.beta": c.beta,
                                                         "scaling.gamma": [1, c.gamma, c.gamma]}).resolution
        assert resolution[0] == base[0] == 32 and resolution[1] == resolution[2] == c.network[0][1]
        seen.add(resolution[1])
    assert len(seen) > 1  # the in-plane size is searched
    widest = max(found, key=lambda c: c.gamma)
    built = evaluate_candidate(spec.source.text, str(path), widest, {}, lambda model, resolution: resolution)  # what a worker builds
    assert built == widest.network[0] and built[0] == 32 and built[1] > 32
    assert Result(1.2, 1.1, 1.3, 2.0, 0.5).scaling_block(spec) == "scaling:\n  alpha: 1.2\n  beta: 1.1\n  gamma: [1, 1.3, 1.3]\n"
    from archc.cli import main

    assert main(["search", str(path), "--evaluate", "tests.search_evaluators:in_plane_size", "--step", "0.2", "--tolerance", "0.1"]) == 0
    assert capsys.readouterr().out.endswith("# paste into the spec:\nscaling:\n  alpha: 1\n  beta: 1\n  gamma: [1, 1.4, 1.4]\n")
    held = archc.read(str(path), {"scaling.gamma": [1, 1, 1]})  # every axis held: width and depth alone
    assert {c.gamma for c in candidates(held, budget=2.0, step=0.2, tolerance=0.1)[0]} == {1.0}


@pytest.mark.slow
def test_scale_and_search_take_a_resnet_as_they_take_b0(tmp_path):
    """Compound scaling of any baseline (the paper's Table 3): ResNet-50's curve starts at timm's resnet50 and grows with
    phi; the grid search ranks ResNet-18's candidates and prints the block to paste."""
    from reference_residual import TIMM

    result = run_archc("scale", "resnet50", "--phi-range", "0:2")
    assert result.returncode == 0, result.stderr
    params = [int(line.split()[4].replace(",", "")) for line in result.stdout.splitlines()[3:6]]
    assert params[0] == TIMM["resnet50"]["params"] and params[0] < params[1] < params[2]
    found = run_archc("search", "resnet18", "--evaluate", "tests.search_evaluators:closeness", "--step", "0.1", "--tolerance", "0.1",
                      "--results", tmp_path / "r.jsonl")
    assert found.returncode == 0, found.stderr
    assert "# paste into the spec:\nscaling:\n  alpha: " in found.stdout


@pytest.mark.parametrize("pool", [False, pytest.param(True, marks=pytest.mark.slow)])
def test_the_workers_build_the_spec_with_its_overrides(pool):
    """A spec read with overrides (or overrides= given to the search) reaches each worker as the search measured it: the
    first stage of tiny3d has 1 block as written, 4 with the override, at depth 1."""
    overridden = archc.api.read(TINY, overrides={"stages[0].repeats": 4})
    with ProcessPoolExecutor(2) if pool else contextlib.nullcontext() as executor:
        for spec, args in ((overridden, {}), (TINY, {"overrides": {"stages[0].repeats": 4}})):
            ranked = grid(spec, ev.first_stage_blocks, budget=2.0, step=0.2, tolerance=0.2, executor=executor, **args)
            assert ranked[0].score == 4.0
