"""The Ray engine of the case commands (`--engine ray`): a side's cases as a Ray Data pipeline.

    cases (from_items) -> map_batches(_CaseWorker, one actor per worker) -> results, streamed back to the store

Each worker is an actor that loads the task, resolves the model once and keeps that handle, its connection pool and
one event loop for the whole run, with `--concurrency` calls in flight. It turns each outcome into the same
`CaseResult` the in-process engine makes, with the same code, and what the call spent as the same ledger lines;
the driver stores each result as it lands (an interrupted run keeps it), so the comparison and the report are
computed from the same results whichever engine ran them. Rate limits hold across the workers (`_ray_limits`).

The workers import the task as the driver names it (a file path made absolute, a module with the driver's working
directory on the path) and read API keys and addresses from their own environment, as a live run reads them from
its process's: a local cluster that the command starts inherits them. On a cluster of several machines the task's
code must be installed there, or shipped with Ray's `working_dir` (`ray job submit --working-dir .`).
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import logging
import os
import pickle
import sys
import warnings
from collections.abc import Callable, Iterator, Sequence
from types import TracebackType
from typing import TYPE_CHECKING, Any

from robustprompt._batch import Limits, Outcome, TaskJob, _SystemClock
from robustprompt._errors import ConfigError
from robustprompt._ledger import Ledger, LedgerLine
from robustprompt._model import Model
from robustprompt._policy import Policy
from robustprompt._ray_limits import SharedLimits
from robustprompt._resolve import model as make_model
from robustprompt.evals._loading import load_task
from robustprompt.evals._results import CaseResult

if TYPE_CHECKING:
    from robustprompt._batch import Call

__all__ = ["RaySuite", "ray_available"]

_INSTALL = "pip install 'robustprompt[ray]'"
Keep = Callable[[int, CaseResult], None]


def ray_available() -> bool:
    try:
        import ray.data  # noqa: F401
    except ImportError:
        return False
    return True


@dataclasses.dataclass(frozen=True)
class RaySide:
    """What a worker needs to call one side's model as the driver would: its name and sampling, the name its
    results carry and the policy they run under."""

    model: str
    temperature: float | None
    seed: int | None
    label: str
    policy: Policy | None = None


class RaySuite:
    """`--engine ray`: runs sides' cases on the cluster at RAY_ADDRESS, else on a local one it starts (and stops
    when the command ends). `workers` actors (default: one per CPU of the cluster) with `concurrency` calls each;
    `rpm` / `tpm` cap the requests and tokens per minute of all workers together."""

    def __init__(
        self, task: str, *, workers: int | None, concurrency: int, rpm: float | None, tpm: float | None
    ) -> None:
        if not ray_available():
            raise ConfigError(f"--engine ray needs Ray Data: {_INSTALL}")
        self._task = _portable(task)
        self._path = os.getcwd()  # where a module named by TASK is found, as on the driver
        self._workers = workers
        self._concurrency = concurrency
        self._rpm = rpm
        self._tpm = tpm
        self._started = False

    def __enter__(self) -> RaySuite:
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None) -> None:
        if self._started:
            import ray

            ray.shutdown()

    def run(
        self,
        model: Model,
        label: str,
        policy: Policy | None,
        cases: Sequence[tuple[str, Any]],
        keep: Keep,
        ledger: Ledger,
    ) -> None:
        """Each (case id, input) through `model` (resolved again on each worker, by name, with its sampling)
        under `policy`, its results named `label`: `keep(index, result)` as each lands, in any order, and what the
        calls spent into `ledger`."""
        side = RaySide(model.name, model.settings.temperature, model.settings.seed, label, policy)
        workers, cpus = self._connect()
        limits = SharedLimits.start(self._rpm, self._tpm, workers)
        print(f"{side.label}: on Ray, {workers} worker(s) x {self._concurrency} call(s)", file=sys.stderr)
        try:
            # The calls wait on the network: more workers than CPUs share them rather than wait to be scheduled.
            for index, result, spent in self._landed(side, cases, workers, min(1.0, cpus / workers), limits):
                for answered_by, task, line in spent:
                    ledger.charge(answered_by, task, line)
                keep(index, result)
        finally:
            if limits is not None:
                limits.stop()

    def _connect(self) -> tuple[int, float]:
        """(the workers to start, the cluster's CPUs), connected first."""
        import ray

        if not ray.is_initialized():
            # RAY_ADDRESS names a running cluster; without it ray.init starts a local one for this command.
            ray.init(address=os.environ.get("RAY_ADDRESS") or None, log_to_driver=False)
            self._started = True
        # Ray Data's progress lines ("Running Dataset ...") would bury the command's own: its warnings stay.
        logging.getLogger("ray.data").setLevel(logging.WARNING)
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # Ray Data's context sets fields it deprecates
            ray.data.DataContext.get_current().enable_progress_bars = sys.stderr.isatty()
        cpus = float(ray.cluster_resources().get("CPU", 1))  # type: ignore[no-untyped-call]
        return self._workers or max(1, int(cpus)), cpus

    def _landed(
        self,
        side: RaySide,
        cases: Sequence[tuple[str, Any]],
        workers: int,
        cpus_each: float,
        limits: SharedLimits | None,
    ) -> Iterator[tuple[int, CaseResult, list[tuple[str, str, LedgerLine]]]]:
        import ray

        # Inputs pickled: Arrow would turn JSON objects of different keys into one struct type, nulls added.
        rows = [{"index": i, "case": case_id, "input": pickle.dumps(value)} for i, (case_id, value) in enumerate(cases)]
        size = max(1, min(self._concurrency * 4, -(-len(rows) // workers)))
        dataset = ray.data.from_items(rows, override_num_blocks=max(1, -(-len(rows) // size)))
        results = dataset.map_batches(
            _CaseWorker,
            batch_size=size,
            concurrency=workers,
            num_cpus=cpus_each,
            fn_constructor_kwargs={"task": self._task, "path": self._path, "side": side,
                                   "concurrency": self._concurrency, "limits": limits},
        )  # fmt: skip
        for batch in results.iter_batches(batch_size=None, batch_format="numpy"):
            for index, result, spent in zip(batch["index"], batch["result"], batch["spent"], strict=True):
                lines = [(model, task, LedgerLine(**line)) for model, task, line in json.loads(spent)]
                yield int(index), CaseResult.from_json(json.loads(result)), lines


def _portable(spec: str) -> str:
    """TASK as a worker can load it: a file's path made absolute (a worker's working directory is not ours)."""
    location, sep, attribute = spec.rpartition(":")
    if sep and (location.endswith(".py") or os.sep in location):
        return f"{os.path.abspath(location)}:{attribute}"
    return spec


class _CaseWorker:
    """One worker of the pipeline: one task, one model handle and pool, one event loop (Ray Data runs an async
    `__call__` of every batch on the actor's loop), `concurrency` calls in flight across its batches."""

    def __init__(self, task: str, path: str, side: RaySide, concurrency: int, limits: SharedLimits | None) -> None:
        if path not in sys.path:
            sys.path.insert(0, path)
        self._task = load_task(task)
        self._side = side
        self._model = make_model(side.model, temperature=side.temperature, seed=side.seed)
        self._limits = limits
        self._concurrency = concurrency
        self._call: Call | None = None
        self._slots: asyncio.Semaphore | None = None

    async def __call__(self, batch: dict[str, Any]) -> dict[str, list[Any]]:
        call, slots = self._started()
        cases = [str(case) for case in batch["case"]]

        async def one(value: bytes) -> Outcome:
            async with slots:
                outcome: Outcome = await call(pickle.loads(value))
                return outcome

        outcomes = await asyncio.gather(*(one(value) for value in batch["input"]))
        return {
            "index": [int(index) for index in batch["index"]],
            "result": [json.dumps(self._result(case, o).to_json()) for case, o in zip(cases, outcomes, strict=True)],
            "spent": [json.dumps(self._spent(outcome)) for outcome in outcomes],
        }

    def _started(self) -> tuple[Call, asyncio.Semaphore]:
        """The call and its slots, made on the first batch: the pool and the limits' locks belong to the loop
        every batch of this actor runs on."""
        if self._call is None or self._slots is None:
            model = self._limits.bind(self._model) if self._limits is not None else self._model
            job = TaskJob(self._task, model, self._side.policy)
            _, self._call = job.start(Limits(None, None, _SystemClock()))
            self._slots = asyncio.Semaphore(self._concurrency)
        return self._call, self._slots

    def _result(self, case: str, outcome: Outcome) -> CaseResult:
        return CaseResult.from_outcome(case, self._task, outcome, model=self._side.label, profile=self._model.profile)

    def _spent(self, outcome: Outcome) -> list[tuple[str, str, dict[str, Any]]]:
        """The ledger lines of one call, as the driver's ledger would have counted it."""
        ledger = Ledger()
        ledger.add(self._task.name, outcome)
        return [(model, task, dataclasses.asdict(line)) for (model, task), line in ledger.lines().items()]
