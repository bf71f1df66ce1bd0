"""Executors on the engines people already run, for :func:`archc.search.grid`: a local process pool, Dask, Ray and
SLURM (through submitit). Each is a context manager yielding a ``concurrent.futures.Executor`` and closing what it
started (a local cluster, a Ray instance it started, its own client connection) when the search ends.

    with archc.engines.dask("tcp://scheduler:8786") as executor:   # or dask(2): a LocalCluster of 2 processes
        ranked = archc.search.grid("base.yaml", evaluate, executor=executor, results="search.jsonl")

Each engine is an optional dependency (``archc[dask]``, ``archc[ray]``, ``archc[slurm]``), checked before anything
starts. The engines' own retries stay as they are; :func:`archc.search.grid` adds its own on top, engine-independent.
"""

from __future__ import annotations

import threading
from concurrent.futures import Executor, Future
from contextlib import contextmanager

from .errors import ArchcError
from .extras import require


class EngineError(ArchcError):
    """An engine option cannot be understood, or the engine cannot be reached."""


def _count(text, option: str) -> int | None:
    """A worker count (``2``), or None when ``text`` is an address."""
    if isinstance(text, int) or (isinstance(text, str) and text.strip().isdigit()):
        count = int(text)
        if count < 1:
            raise EngineError(f"{option} {count}: a worker count is 1 or more, or give an address")
        return count
    return None


@contextmanager
def processes(workers: int):
    """A local process pool (one machine)."""
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(workers) as pool:
        yield pool


@contextmanager
def dask(target: str | int):
    """A Dask cluster's executor: ``target`` is a scheduler address (``tcp://host:8786``) or a worker count, which
    starts a ``LocalCluster`` of that many single-threaded worker processes (a process each: an evaluator holding
    the GIL in one does not stall the others)."""
    require("distributed", "--dask")
    from distributed import Client, LocalCluster

    count = _count(target, "--dask")
    cluster = LocalCluster(n_workers=count, threads_per_worker=1, processes=True, dashboard_address=None) if count else None
    try:
        client = Client(cluster) if cluster else Client(target, timeout=30)
    except OSError as exc:
        if cluster:
            cluster.close()
        raise EngineError(f"--dask {target}: cannot reach the scheduler ({exc})") from None
    try:
        # pure=False: a candidate submitted again after its worker died gets a new task, not the failed one's result
        yield client.get_executor(pure=False)
    finally:
        client.close()
        if cluster:
            cluster.close()


class _FutureOfRef(Executor):
    """Ray tasks as an Executor: each ``submit`` is one remote task; its ObjectRef's own ``future()`` is the Future."""

    def __init__(self, ray, retries: int):
        self._ray, self._retries, self._remote = ray, retries, {}

    def submit(self, fn, /, *args, **kwargs) -> Future:
        if fn not in self._remote:  # one remote function per callable; Ray exports it once
            self._remote[fn] = self._ray.remote(num_cpus=1, max_retries=self._retries)(fn)
        return self._remote[fn].remote(*args, **kwargs).future()


@contextmanager
def ray(target: str | int):
    """Ray tasks: ``target`` is ``auto`` (the running cluster), an address (``ray://host:10001``), or a CPU count,
    which starts a local Ray instance with that many CPUs (one candidate per CPU). A Ray instance this started is
    shut down at the end; a connection to a running cluster is closed."""
    require("ray", "--ray")
    import ray as ray_module

    count = _count(target, "--ray")
    try:
        if count:
            ray_module.init(num_cpus=count, include_dashboard=False, log_to_driver=False)
        else:
            ray_module.init(address=target, log_to_driver=False)
    except (ConnectionError, ValueError, RuntimeError) as exc:
        raise EngineError(f"--ray {target}: cannot start or reach Ray ({str(exc).strip().splitlines()[0] if str(exc).strip() else exc!r})") from None
    try:
        # Ray retries a task whose worker process died (max_retries); archc's own retries come on top.
        yield _FutureOfRef(ray_module, retries=0)
    finally:
        ray_module.shutdown()


SLURM_KEYS = {"partition": "slurm_partition", "gpus": "gpus_per_node", "cpus": "cpus_per_task", "mem": "slurm_mem",
              "time": "timeout_min", "account": "slurm_account", "qos": "slurm_qos", "constraint": "slurm_constraint",
              "nodes": "nodes", "tasks": "tasks_per_node", "array": "slurm_array_parallelism"}


def slurm_options(text: str) -> dict:
    """``partition=gpu,gpus=1,time=60`` as submitit's parameters (``time`` in minutes); ``local`` is ``{}``."""
    options = {}
    if text.strip() in ("", "local"):
        return options
    for part in text.split(","):
        key, equals, value = part.partition("=")
        key, value = key.strip(), value.strip()
        if not equals or not value or key not in SLURM_KEYS:
            raise EngineError(f"--slurm: cannot read {part.strip()!r}; give KEY=VALUE pairs separated by commas, KEY one of "
                              f"{', '.join(SLURM_KEYS)} (or --slurm local)")
        if key in ("gpus", "cpus", "time", "nodes", "tasks", "array"):
            if not value.isdigit():
                raise EngineError(f"--slurm: {key}={value}: expected a whole number{' of minutes' if key == 'time' else ''}")
            value = int(value)
        options[SLURM_KEYS[key]] = value
    return options


class _JobFutures(Executor):
    """submitit jobs as an Executor: ``submit`` submits one job (one candidate) and returns a Future that one polling
    thread completes when the job ends; a job that fails, times out or is cancelled raises there, and the search
    submits its candidate again."""

    def __init__(self, executor, poll: float):
        self._executor, self._poll = executor, poll
        self._jobs: dict = {}
        self._lock, self._stop = threading.Lock(), threading.Event()
        self._thread = threading.Thread(target=self._watch, name="archc-slurm-jobs", daemon=True)
        self._thread.start()

    def submit(self, fn, /, *args, **kwargs) -> Future:
        job = self._executor.submit(fn, *args, **kwargs)
        future = Future()
        future.set_running_or_notify_cancel()
        with self._lock:
            self._jobs[job] = future
        return future

    def _watch(self) -> None:
        while not self._stop.wait(self._poll):
            with self._lock:
                finished = [(job, future) for job, future in self._jobs.items() if job.done()]
                for job, _ in finished:
                    del self._jobs[job]
            for job, future in finished:
                try:
                    future.set_result(job.result())
                except Exception as exc:  # noqa: BLE001  (a failed, timed-out or cancelled job: the search decides)
                    future.set_exception(exc)

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        self._stop.set()
        with self._lock:
            for job in self._jobs:
                job.cancel(check=False)  # the coordinator is leaving: do not leave jobs queued on the cluster
            self._jobs.clear()


@contextmanager
def slurm(options: str | dict, folder: str = "archc-slurm", poll: float = 1.0):
    """One SLURM job per candidate through submitit: ``options`` as ``partition=gpu,gpus=1,time=60`` (or a dict of
    submitit's parameters), or ``local`` for submitit's local executor (each job a local process: a laptop, a test).
    Job logs go to ``folder``."""
    require("submitit", "--slurm")
    import submitit

    parameters = slurm_options(options) if isinstance(options, str) else dict(options)
    local = isinstance(options, str) and options.strip() == "local"
    executor = submitit.LocalExecutor(folder=folder) if local else submitit.AutoExecutor(folder=folder)
    if local:
        executor.update_parameters(timeout_min=parameters.get("timeout_min", 60))
    else:
        try:
            executor.update_parameters(**parameters)
        except (ValueError, TypeError, NameError) as exc:
            raise EngineError(f"--slurm {options}: {exc}") from None
    jobs = _JobFutures(executor, poll)
    try:
        yield jobs
    finally:
        jobs.shutdown()
