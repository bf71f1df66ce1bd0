"""The coefficient search on the engines people run (Dask, Ray, SLURM through submitit), and what it does when a
worker, a job or the coordinator itself dies. One real local cluster per engine, shared by the module's tests."""

import inspect
import json
import os
import re
import signal
import subprocess
import sys
import time
from concurrent.futures import Executor, Future

import pytest
import search_evaluators as ev
from conftest import ROOT, TINY3D, run_archc

from archc import engines
from archc.errors import ArchcError
from archc.search import grid

TINY = str(TINY3D)
SEARCH = dict(budget=2.0, step=0.1, tolerance=0.1)  # 12 candidates, 4 distinct networks (docs/scaling.md)
TESTS = str(ROOT / "tests")


def alone(ranked):
    """A result whose network no other triple builds (so it is evaluated as itself), and its key."""
    from archc.search import candidates

    found, _ = candidates(TINY, **SEARCH)
    networks = [c.network for c in found]
    single = next(c for c in found if networks.count(c.network) == 1)
    return next(r for r in ranked if (r.alpha, r.beta, r.gamma) == (single.alpha, single.beta, single.gamma)), single.key


def lines_of(path) -> list[dict]:
    return [json.loads(line) for line in open(path).read().splitlines()]


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    """The reference: the same search in this process, no engine; its results file's records, sorted."""
    path = tmp_path_factory.mktemp("serial") / "r.jsonl"
    ranked = grid(TINY, ev.closeness, results=path, **SEARCH)
    return ranked, sorted(lines_of(path), key=lambda r: r["key"])


@pytest.fixture(scope="module")
def dask_cluster(tmp_path_factory):
    """Two single-threaded worker processes; ARCHC_SEARCH_LOG reaches them through the environment they start with."""
    pytest.importorskip("distributed")
    from distributed import LocalCluster

    log = tmp_path_factory.mktemp("log") / "calls.log"
    saved = {name: os.environ.get(name) for name in ("ARCHC_SEARCH_LOG", "ARCHC_SEARCH_SLEEP")}
    # For the cluster's lifetime: a worker that died is started again by its nanny, in this process, with this environment.
    os.environ.update(ARCHC_SEARCH_LOG=str(log), ARCHC_SEARCH_SLEEP="1.5")  # `logged` takes 1.5 s a candidate
    try:
        with LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster:
            yield cluster, log
    finally:
        for name, value in saved.items():
            os.environ.pop(name) if value is None else os.environ.update({name: value})


# Retries and failures, engine-independent: an executor whose futures fail as a lost worker's do.

class LosesWorkers(Executor):
    """Runs each call in this process, but the first ``losses`` attempts at each candidate in ``lose`` fail as a
    future does when its worker dies (the evaluator never ran)."""

    def __init__(self, lose: set, losses: int):
        self.lose, self.losses, self.attempts = lose, losses, {}

    def submit(self, fn, /, *args, **kwargs):
        key = args[2].key  # run_candidate(spec_text, spec_file, candidate, ...)
        self.attempts[key] = self.attempts.get(key, 0) + 1
        future = Future()
        if key in self.lose and self.attempts[key] <= self.losses:
            future.set_exception(ConnectionError(f"worker lost while running attempt {self.attempts[key]}"))
        else:
            future.set_result(fn(*args, **kwargs))
        return future


def test_a_lost_worker_is_retried_and_the_results_are_the_one_process_ones(tmp_path, one_process):
    ranked, expected = one_process
    first, key = alone(ranked)
    messages, executor = [], LosesWorkers({key}, losses=2)
    again = grid(TINY, ev.closeness, executor=executor, results=tmp_path / "r.jsonl", progress=messages.append, retries=2, **SEARCH)
    assert again == ranked and not again.failed and executor.attempts[key] == 3
    assert sorted(lines_of(tmp_path / "r.jsonl"), key=lambda r: r["key"]) == expected
    named = f"alpha={first.alpha:g} beta={first.beta:g} gamma={first.gamma:g}"
    assert [m for m in messages if "lost" in m] == [
        f"{named}: attempt 1 lost (ConnectionError: worker lost while running attempt 1); trying again",
        f"{named}: attempt 2 lost (ConnectionError: worker lost while running attempt 2); trying again"]


def test_a_candidate_lost_on_every_attempt_is_recorded_as_failed_and_tried_again_later(tmp_path, one_process):
    ranked, expected = one_process
    last, key = alone(ranked)
    results = tmp_path / "r.jsonl"
    partial = grid(TINY, ev.closeness, executor=LosesWorkers({key}, losses=2), results=results, retries=1, **SEARCH)
    reason = "ConnectionError: worker lost while running attempt 2 (on each of 2 attempts)"
    assert [(f.alpha, f.beta, f.gamma, f.reason) for f in partial.failed] == [(last.alpha, last.beta, last.gamma, reason)]
    assert list(partial) == [r for r in ranked if r != last]
    assert {"key": key, "failed": {"alpha": last.alpha, "beta": last.beta, "gamma": last.gamma, "macs_ratio": last.macs_ratio,
                                   "reason": reason}} in lines_of(results)
    ev.CALLS.clear()
    assert grid(TINY, ev.closeness, results=results, **SEARCH) == ranked  # the failed candidate, and it alone, runs again
    assert [call[:2] for call in ev.CALLS] == [(round(last.alpha, 6), round(last.beta, 6))]
    assert sorted((r for r in lines_of(results) if "result" in r), key=lambda r: r["key"]) == expected


def test_a_refused_submission_stops_the_search_with_what_was_kept(tmp_path):
    class Broken(Executor):
        def submit(self, fn, /, *args, **kwargs):
            raise RuntimeError("cannot schedule new futures after shutdown")

    with pytest.raises(ArchcError, match=r"the executor refused alpha=[\d.]+ beta=[\d.]+ gamma=[\d.]+: RuntimeError: cannot schedule new futures"
                                         r" after shutdown; 0 results so far kept in .*r.jsonl: run again to resume"):
        grid(TINY, ev.closeness, executor=Broken(), results=tmp_path / "r.jsonl", **SEARCH)


# Dask: a real LocalCluster of two worker processes.

def survives_a_worker_killed_mid_candidate(executor, tmp_path, one_process) -> list[str]:
    """The search on ``executor``, whose first candidate kills its own worker process: the same results as one
    process, each once. Returns the progress messages."""
    ranked, expected = one_process
    marker, messages = tmp_path / "died", []
    found = grid(TINY, ev.DiesOnce(str(marker)), executor=executor, results=tmp_path / "r.jsonl", progress=messages.append, **SEARCH)
    assert marker.exists()  # a worker did die, in the middle of a candidate
    assert found == ranked and not found.failed
    records = lines_of(tmp_path / "r.jsonl")
    assert len({r["key"] for r in records}) == len(records) == 12  # complete and duplicate-free
    assert sorted(records, key=lambda r: r["key"]) == expected  # identical to the one-process run's
    return messages


@pytest.mark.slow
def test_dask_survives_a_worker_killed_mid_candidate(tmp_path, one_process, dask_cluster):
    cluster, _ = dask_cluster
    with engines.dask(cluster.scheduler_address) as executor:
        messages = survives_a_worker_killed_mid_candidate(executor, tmp_path, one_process)
    assert not [m for m in messages if "lost" in m]  # Dask itself ran the lost task again, before archc saw a failure


@pytest.mark.slow
def test_a_local_process_pool_whose_worker_dies_stops_with_the_results_kept(tmp_path):
    import multiprocessing
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(2, mp_context=multiprocessing.get_context("spawn")) as pool, pytest.raises(ArchcError) as info:
        grid(TINY, ev.DiesOnce(str(tmp_path / "died")), executor=pool, results=tmp_path / "r.jsonl", **SEARCH)
    assert re.fullmatch(r"the executor refused alpha=[\d.]+ beta=[\d.]+ gamma=[\d.]+: BrokenProcessPool: .*; \d+ results? so far kept in .*r.jsonl: "
                        r"run again to resume", info.value.message)


def test_search_cli_warns_of_and_lists_the_failed_candidates(monkeypatch, capsys, one_process):
    """The CLI's report of a candidate lost on every attempt (the engine swapped for one whose workers are lost)."""
    from contextlib import contextmanager

    from archc.cli import main

    ranked, _ = one_process
    lost, key = alone(ranked)
    monkeypatch.setattr(engines, "processes", contextmanager(lambda workers: (yield LosesWorkers({key}, losses=9))))
    assert main(["search", TINY, "--evaluate", "search_evaluators:closeness", "--step", "0.1", "--tolerance", "0.1", "--workers", "2",
                 "--retries", "1", "--json"]) == 0
    out, err = capsys.readouterr()
    reason = "ConnectionError: worker lost while running attempt 2 (on each of 2 attempts)"
    assert f"warning: alpha={lost.alpha:g} beta={lost.beta:g} gamma={lost.gamma:g} failed: {reason}" in err
    data = json.loads(out)
    assert data["failed"] == [{"alpha": lost.alpha, "beta": lost.beta, "gamma": lost.gamma, "macs_ratio": lost.macs_ratio, "reason": reason}]
    assert len(data["ranked"]) == 11


@pytest.mark.slow
def test_dask_reports_the_evaluators_error_with_where_it_was_raised(dask_cluster):
    cluster, _ = dask_cluster
    line = inspect.getsourcelines(ev.always_broken)[1] + 1
    with engines.dask(cluster.scheduler_address) as executor, pytest.raises(ArchcError) as info:
        grid(TINY, ev.always_broken, executor=executor, **SEARCH)
    assert re.fullmatch(rf"evaluating alpha=[\d.]+ beta=[\d.]+ gamma=[\d.]+ failed: Broken: out of patience; raised at search_evaluators.py:{line} "
                        r"in always_broken, from search.py:\d+ in evaluate_candidate, from search.py:\d+ in run_candidate; nothing was kept "
                        r"\(give a results file to resume an interrupted search\)", info.value.message)
    assert isinstance(info.value.__cause__, ev.Broken)  # the worker's exception itself, sent back


@pytest.mark.slow
def test_a_killed_coordinator_resumes_from_its_file_without_evaluating_a_finished_candidate_again(tmp_path, one_process, dask_cluster):
    cluster, log = dask_cluster
    _, expected = one_process
    results = tmp_path / "r.jsonl"
    log.write_text("")
    args = [sys.executable, "-m", "archc", "search", TINY, "--evaluate", "tests.search_evaluators:logged", "--step", "0.1",
            "--tolerance", "0.1", "--dask", cluster.scheduler_address, "--results", str(results)]
    coordinator = subprocess.Popen(args, cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while not (results.exists() and results.read_text().count("\n") >= 1) and time.monotonic() < deadline:
        time.sleep(0.05)
    coordinator.send_signal(signal.SIGKILL)  # no cleanup: the coordinator is gone mid-search
    coordinator.wait()
    finished = {r["key"] for r in lines_of(results)}
    assert 1 <= len(finished) < 12
    time.sleep(1.6)  # the killed run's evaluations still running finish (and log) before the resumed run starts
    before = log.read_text().splitlines()
    resumed = run_archc(*args[3:])
    assert resumed.returncode == 0, resumed.stderr
    assert f"12 candidates under alpha * beta**2 * gamma**3 ≈ budget = 2 (±10%); {len(finished)} already done" in resumed.stderr
    again = log.read_text().splitlines()[len(before):]
    assert again and not set(again) & finished  # nothing that had finished was evaluated twice
    records = lines_of(results)
    assert len({r["key"] for r in records}) == len(records) == 12  # nothing lost, no duplicates
    assert sorted(records, key=lambda r: r["key"]) == expected


@pytest.mark.slow
def test_search_cli_on_a_local_dask_cluster(tmp_path, one_process):
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:closeness", "--step", "0.1", "--tolerance", "0.1",
                       "--dask", "2", "--results", tmp_path / "r.jsonl", "--json")
    assert result.returncode == 0, result.stderr
    ranked, expected = one_process
    assert json.loads(result.stdout)["winner"]["alpha"] == ranked.winner.alpha
    assert sorted(lines_of(tmp_path / "r.jsonl"), key=lambda r: r["key"]) == expected


# Ray: a real local instance with 2 CPUs; SLURM: submitit's local executor (each job a process of its own).

@pytest.fixture
def workers_find_the_evaluators(monkeypatch):
    """Ray's workers and submitit's jobs import the evaluators by module name, as a user's workers import theirs."""
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([TESTS, str(ROOT)]))


@pytest.mark.slow
def test_ray_survives_a_worker_killed_mid_candidate(tmp_path, one_process, workers_find_the_evaluators):
    pytest.importorskip("ray")
    with engines.ray(2) as executor:
        messages = survives_a_worker_killed_mid_candidate(executor, tmp_path, one_process)
    assert any("attempt 1 lost (WorkerCrashedError: " in m for m in messages)  # archc's retry, not Ray's


@pytest.mark.slow
def test_slurm_path_on_submitits_local_executor_survives_a_killed_job(tmp_path, one_process, workers_find_the_evaluators):
    pytest.importorskip("submitit")
    with engines.slurm("local", folder=str(tmp_path / "jobs"), poll=0.2) as executor:
        messages = survives_a_worker_killed_mid_candidate(executor, tmp_path, one_process)
    assert any("attempt 1 lost (UncompletedJobError: " in m for m in messages)
    assert len(list((tmp_path / "jobs").glob("*_result.pkl"))) == 4  # one job per network that finished


@pytest.mark.slow
@pytest.mark.parametrize("flag, value, package", [("--slurm", "local", "submitit"), ("--ray", "2", "ray")])
def test_search_cli_on_ray_and_on_submitits_local_executor(tmp_path, one_process, workers_find_the_evaluators, flag, value, package):
    """The command line's --ray and --slurm, end to end: the same winner and results file as the one-process search."""
    pytest.importorskip(package)
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:closeness", "--step", "0.1", "--tolerance", "0.1",
                       flag, value, "--slurm-logs", tmp_path / "jobs", "--results", tmp_path / "r.jsonl", "--json")
    assert result.returncode == 0, result.stderr
    ranked, expected = one_process
    assert json.loads(result.stdout)["winner"]["alpha"] == ranked.winner.alpha
    assert sorted(lines_of(tmp_path / "r.jsonl"), key=lambda r: r["key"]) == expected


# Optional engines: each named, with its extra, when missing; options checked before anything starts.

@pytest.mark.parametrize("flag, package, extra", [("--dask", "distributed", "dask"), ("--ray", "ray", "ray"), ("--slurm", "submitit", "slurm")])
def test_a_missing_engine_is_named_with_its_extra(monkeypatch, flag, package, extra):
    import importlib.util

    from archc.cli import main

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == package else real(name, *a))
    with pytest.raises(ArchcError, match=re.escape(f"{flag} needs {package}: pip install 'archc[{extra}]'")):
        with getattr(engines, flag[2:])("2" if flag != "--slurm" else "local"):
            pass
    assert main(["search", TINY, "--evaluate", "search_evaluators:closeness", flag, "2" if flag != "--slurm" else "local"]) == 1


def test_search_cli_takes_one_engine_and_checks_its_options_before_any_work(tmp_path):
    from archc.cli import main

    with pytest.raises(SystemExit) as exit_status:
        main(["search", TINY, "--evaluate", "search_evaluators:closeness", "--dask", "2", "--workers", "2"])
    assert exit_status.value.code == 2
    result = run_archc("search", TINY, "--evaluate", "tests.search_evaluators:closeness", "--slurm", "colour=red")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    assert result.stderr.startswith("archc: error: --slurm: cannot read 'colour=red'; give KEY=VALUE pairs") and not result.stdout


@pytest.mark.parametrize("text, message", [
    ("partition=gpu,gpus=one", "--slurm: gpus=one: expected a whole number"),
    ("time=1h", "--slurm: time=1h: expected a whole number of minutes"),
    ("partition", "--slurm: cannot read 'partition'; give KEY=VALUE pairs separated by commas, KEY one of partition, gpus,"),
    ("colour=red", "--slurm: cannot read 'colour=red'"),
])
def test_slurm_options_are_checked(text, message):
    with pytest.raises(engines.EngineError, match=re.escape(message)):
        engines.slurm_options(text)


def test_slurm_options_become_submitits_parameters():
    assert engines.slurm_options("partition=gpu,gpus=1,time=60,mem=32G") == {
        "slurm_partition": "gpu", "gpus_per_node": 1, "timeout_min": 60, "slurm_mem": "32G"}
    assert engines.slurm_options("local") == {}


def test_a_worker_count_below_one_is_refused():
    with pytest.raises(engines.EngineError, match=re.escape("--dask 0: a worker count is 1 or more, or give an address")):
        with engines.dask("0"):
            pass


if __name__ == "__main__":  # pragma: no cover
    sys.exit(pytest.main([__file__]))
