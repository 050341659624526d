"""The attempt loop, written once.

`_flow` is a pure state machine: it yields the next prompt to send and receives what came back (a completion
or a provider error, after transport retries). It parses, validates, re-asks within budget and downgrades the
output mode when a server rejects it. The sync and async drivers only move prompts to the backend and back.

Three budgets stay apart: transport retries (same request again, tenacity, honouring Retry-After), re-asks (the
model answered but the answer failed validation), and mode downgrades (the server rejected the output mode;
at most one per mode, remembered per model for the process).
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable, Generator
from dataclasses import dataclass
from typing import Any, TypeVar

import tenacity

from robustprompt._completion import Completion
from robustprompt._errors import (
    ConfigError,
    ContextLengthError,
    OutputError,
    ProviderError,
    RefusalError,
    SchemaRejectedError,
)
from robustprompt._model import Model, resolve
from robustprompt._parse import ParseError, parse
from robustprompt._profile import Policy
from robustprompt._prompt import OutputMode, Prompt, render, with_reask
from robustprompt._run import Attempt, Run
from robustprompt._task import Task
from robustprompt._tokens import fit_examples

__all__ = ["run_async", "run_sync"]

O = TypeVar("O")

_EXAMPLE_OVERHEAD = 8  # role markers and separators around each example turn

_rejected_modes: dict[str, set[OutputMode]] = {}
_rejected_lock = threading.Lock()


@dataclass(frozen=True, slots=True)
class _Sent:
    """What one send produced, after transport retries."""

    result: Completion | ProviderError
    transport_errors: tuple[str, ...]
    latency: float


Flow = Generator[Prompt, _Sent, Run[Any]]


def _modes(model: Model, policy: Policy) -> list[OutputMode]:
    if policy.mode is not None:
        if policy.mode not in model.profile.modes:
            supported = ", ".join(m.value for m in model.profile.modes)
            raise ConfigError(
                f"{model.name} does not support output mode {policy.mode.value!r}; it supports {supported}"
            )
        return [policy.mode]
    with _rejected_lock:
        rejected = _rejected_modes.get(model.name, set())
        return [m for m in model.profile.modes if m not in rejected] or [model.profile.modes[-1]]


def _remember_rejected(model: Model, mode: OutputMode) -> None:
    with _rejected_lock:
        _rejected_modes.setdefault(model.name, set()).add(mode)


def _budget(model: Model) -> int:
    output = model.settings.max_output_tokens or model.profile.max_output_tokens
    return model.profile.context_window - output


def _render(task: Task[Any, Any], input_json: str, model: Model, mode: OutputMode) -> Prompt:
    """Render with as many examples as fit the context window (minus the output budget), in declared order."""
    full = render(task.instructions, task.examples, input_json, task.spec, mode)
    budget = _budget(model)
    size = len(full.system.encode()) + sum(len(m.content.encode()) + _EXAMPLE_OVERHEAD for m in full.messages)
    if size <= budget:  # a token is at least one byte: it fits without counting
        return full
    count = model.backend.count_tokens
    bare = render(task.instructions, (), input_json, task.spec, mode)
    fixed = count(bare.system).tokens + count(bare.messages[-1].content).tokens + 2 * _EXAMPLE_OVERHEAD
    sizes = [count(i).tokens + count(o).tokens + _EXAMPLE_OVERHEAD for i, o in task.examples]
    kept, dropped = fit_examples(fixed, sizes, budget)
    if fixed > budget:
        raise ContextLengthError(
            f"the prompt needs about {fixed} tokens without examples, over the {budget} left in "
            f"{model.name}'s context window after the output budget: shorten the input or pick a larger model",
            provider=model.profile.provider,
            model=model.profile.model_id,
        )
    examples = [task.examples[i] for i in kept]
    return render(task.instructions, examples, input_json, task.spec, mode, dropped_examples=dropped)


@dataclass(frozen=True, slots=True)
class _Checked:
    output: Any
    repairs: tuple[str, ...]
    errors: tuple[str, ...]
    clean: bool  # parsed as JSON with no repair at all


def _check(task: Task[Any, Any], completion: Completion) -> _Checked:
    try:
        parsed = parse(completion.text, task.spec.schema)
    except ParseError as exc:
        return _Checked(None, (), _with_truncation(completion, [str(exc)]), clean=False)
    output, errors = task.validator.validate(parsed.value)
    return _Checked(output, parsed.repairs, _with_truncation(completion, errors), clean=not parsed.repairs)


def _with_truncation(completion: Completion, errors: list[str]) -> tuple[str, ...]:
    if errors and completion.truncated:
        errors.insert(0, "the answer was cut off at the output token limit: answer more briefly")
    return tuple(errors)


def _flow(task: Task[Any, Any], value: Any, model: Model, policy: Policy) -> Flow:
    input_json = task.input_json(value)
    modes = _modes(model, policy)
    mode = modes.pop(0)
    base = _render(task, input_json, model, mode)
    run: Run[Any] = Run(task.name, task.fingerprint, model.name, dropped_examples=base.dropped_examples)
    prompt, reasks, start = base, 0, time.perf_counter()
    while True:
        sent = yield prompt
        run.latency = time.perf_counter() - start
        number = len(run.attempts) + 1
        result = sent.result
        if isinstance(result, ProviderError):
            run.attempts.append(
                Attempt(
                    number,
                    model.name,
                    mode,
                    transport_errors=sent.transport_errors,
                    latency=sent.latency,
                    errors=(f"{type(result).__name__}: {result}",),
                )
            )
            if isinstance(result, SchemaRejectedError) and modes and policy.mode is None:
                _remember_rejected(model, mode)
                mode = modes.pop(0)
                prompt = base = _render(task, input_json, model, mode)
                continue
            run.error = f"{type(result).__name__}: {result}"
            result.run = run
            raise result
        completion = result
        if completion.finish_reason == "refusal":
            run.attempts.append(
                Attempt(
                    number,
                    model.name,
                    mode,
                    raw=completion.text,
                    usage=completion.usage,
                    latency=sent.latency,
                    finish_reason="refusal",
                    errors=(f"refused: {completion.refusal or ''}",),
                    transport_errors=sent.transport_errors,
                )
            )
            run.error = f"refused: {completion.refusal or 'no reason given'}"
            raise _refusal(model, completion, run)
        checked = _check(task, completion)
        errors = checked.errors
        run.attempts.append(
            Attempt(
                number,
                model.name,
                mode,
                raw=completion.text,
                errors=errors,
                repairs=checked.repairs,
                usage=completion.usage,
                latency=sent.latency,
                finish_reason=completion.finish_reason,
                transport_errors=sent.transport_errors,
            )
        )
        # Constrained decoding yields clean JSON; needing repairs means the server ignored the mode (as some
        # servers do with options they dropped): answers in that mode cannot be trusted to follow the schema.
        ignored = mode.constrained and not checked.clean and not completion.truncated and policy.mode is None
        if ignored:
            _remember_rejected(model, mode)
        if not errors:
            run.output = checked.output
            return run
        if ignored and modes:
            mode = modes.pop(0)
            base = _render(task, input_json, model, mode)
        elif reasks >= policy.reasks:
            run.error = f"no valid output after {number} attempt(s): {'; '.join(errors)}"
            raise OutputError(f"{task.name} on {model.name}: {run.error}", run)
        else:
            reasks += 1
        prompt = with_reask(
            base,
            completion.text,
            errors,
            max_answer_chars=policy.reask_answer_chars,
            max_errors=policy.reask_max_errors,
        )


def _refusal(model: Model, completion: Completion, run: Run[Any]) -> RefusalError:
    err = RefusalError(
        f"the model refused: {completion.refusal or 'no reason given'}",
        provider=model.profile.provider,
        model=model.profile.model_id,
    )
    err.run = run
    return err


# Transport retries: one tenacity configuration for both drivers.


def _retryable(exc: BaseException) -> bool:
    return isinstance(exc, ProviderError) and exc.retryable


class _AskedWaitBeyondCap(tenacity.stop.stop_base):
    """Stop, rather than retry early, when the server asks for a wait beyond the cap."""

    def __init__(self, cap: float) -> None:
        self.cap = cap

    def __call__(self, state: tenacity.RetryCallState) -> bool:
        exc = state.outcome.exception() if state.outcome else None
        wait = getattr(exc, "retry_after", None)
        return wait is not None and wait > self.cap


def _wait(policy: Policy) -> Callable[[tenacity.RetryCallState], float]:
    # Exponential backoff plus up to one initial step of jitter, so clients that failed together spread out.
    backoff = tenacity.wait_exponential(
        multiplier=policy.backoff_initial, max=policy.backoff_max
    ) + tenacity.wait_random(0, policy.backoff_initial)

    def wait(state: tenacity.RetryCallState) -> float:
        exc = state.outcome.exception() if state.outcome else None
        asked = getattr(exc, "retry_after", None)
        return float(asked) if asked is not None else backoff(state)

    return wait


def _retry_args(policy: Policy, log: list[str]) -> dict[str, Any]:
    def note(state: tenacity.RetryCallState) -> None:
        exc = state.outcome.exception() if state.outcome else None
        log.append(f"{type(exc).__name__}: {exc}")

    return {
        "stop": tenacity.stop_after_attempt(policy.transport_retries + 1) | _AskedWaitBeyondCap(policy.retry_after_cap),
        "wait": _wait(policy),
        "retry": tenacity.retry_if_exception(_retryable),
        "before_sleep": note,
        "reraise": True,
    }


def _send(model: Model, prompt: Prompt, policy: Policy) -> _Sent:
    log: list[str] = []
    start = time.perf_counter()
    result: Completion | ProviderError
    try:
        result = tenacity.Retrying(**_retry_args(policy, log))(model.backend.complete, prompt)
    except ProviderError as exc:
        result = exc
    return _Sent(result, tuple(log), time.perf_counter() - start)


async def _asend(model: Model, prompt: Prompt, policy: Policy) -> _Sent:
    log: list[str] = []
    start = time.perf_counter()
    result: Completion | ProviderError
    try:
        result = await tenacity.AsyncRetrying(**_retry_args(policy, log))(model.backend.acomplete, prompt)
    except ProviderError as exc:
        result = exc
    return _Sent(result, tuple(log), time.perf_counter() - start)


def run_sync(task: Task[Any, O], value: Any, model: Model | str | None, policy: Policy | None) -> Run[O]:
    resolved, policy = resolve(model), policy or Policy()
    flow = _flow(task, value, resolved, policy)
    prompt = next(flow)
    while True:
        try:
            prompt = flow.send(_send(resolved, prompt, policy))
        except StopIteration as done:
            result: Run[O] = done.value
            return result


async def run_async(task: Task[Any, O], value: Any, model: Model | str | None, policy: Policy | None) -> Run[O]:
    resolved, policy = resolve(model), policy or Policy()
    flow = _flow(task, value, resolved, policy)
    prompt = next(flow)
    while True:
        try:
            prompt = flow.send(await _asend(resolved, prompt, policy))
        except StopIteration as done:
            result: Run[O] = done.value
            return result
