"""The attempt loop, written once.

`_flow` is a pure state machine for one model: it yields the next request and receives what came back (a
completion or a provider error, after transport retries). It parses, validates, re-asks within budget and
downgrades the output mode when a server rejects or ignores it. `_chain` runs the flow over the model and its
fallbacks, consulting each model's circuit breaker. The sync and async drivers carry requests to the backend and
back; around the flow they read and fill the response cache (`_cache`) and tell the hooks (`_hooks`) when the call
and each attempt start and end.

Budgets stay apart: transport retries (the same request again, in `_retry`), re-asks (the model answered but
the answer failed validation), mode downgrades (at most one per mode, remembered per model and task for the
process) and
fallbacks (one pass down the chain); over all of them, optional caps on requests in all and on wall time.
"""

from __future__ import annotations

import asyncio
import contextlib
import datetime as dt
import time
from collections.abc import Generator, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, TypeVar

from robustprompt._adaptation import configuration_for
from robustprompt._cache import Cache, enabled
from robustprompt._completion import Completion
from robustprompt._deadline import DEADLINE
from robustprompt._errors import (
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    OutputError,
    ProviderError,
    ProviderTimeout,
    RefusalError,
    RobustPromptError,
    SchemaRejectedError,
    contained,
    typed,
)
from robustprompt._events import CallInfo
from robustprompt._hooks import hooks
from robustprompt._ledger import price
from robustprompt._lifecycle import warn_replaced, warn_retirement
from robustprompt._model import Model, believable, embedder
from robustprompt._parse import ParseError, parse
from robustprompt._policy import Policy
from robustprompt._prompt import OutputMode, OutputSpec, Prompt, with_reask
from robustprompt._renderings import (
    Configuration,
    Embed,
    Pair,
    choose_examples,
    format_input,
    ranked_texts,
    render_configured,
)
from robustprompt._resolve import embedding_model, models_for, replacement_for
from robustprompt._retry import Request, Sent, asend, send
from robustprompt._run import Attempt, Run
from robustprompt._spans import copied_schema
from robustprompt._state import state
from robustprompt._task import TaskDeclaration
from robustprompt._tokens import fit_examples

__all__ = ["answered", "first_prompt", "run_async", "run_sync"]

O = TypeVar("O")

_EXAMPLE_OVERHEAD = 8  # role markers and separators around each example turn


@dataclass(slots=True)
class _Budget:
    """Caps over a whole call, across retries, re-asks, downgrades and fallbacks."""

    max_attempts: int | None
    deadline: float | None  # time.monotonic() value
    used: int = 0
    started: float = field(default_factory=time.monotonic)

    @property
    def timed_out(self) -> bool:
        return self.deadline is not None and time.monotonic() >= self.deadline

    def spent(self) -> str | None:
        if self.max_attempts is not None and self.used >= self.max_attempts:
            return f"the attempt budget of {self.max_attempts} request(s) is spent"
        if self.timed_out:
            return f"the call's deadline passed after {time.monotonic() - self.started:.1f} s"
        return None

    def tries(self, transport_retries: int) -> int:
        tries = transport_retries + 1
        return tries if self.max_attempts is None else max(min(tries, self.max_attempts - self.used), 1)


def _modes(
    model: Model, task: TaskDeclaration[Any, Any], policy: Policy, preferred: OutputMode | None
) -> list[OutputMode]:
    if policy.mode is not None:
        if policy.mode not in model.profile.modes:
            supported = ", ".join(m.value for m in model.profile.modes)
            raise ConfigError(
                f"{model.name} does not support output mode {policy.mode.value!r}; it supports {supported}"
            )
        return [policy.mode]
    # A rejection may be of the mode or of one task's schema (too large, too deep): remembered per model and task.
    demoted = state.demotions.demoted((model.key, task.fingerprint))
    # The configuration's mode goes first when the model has it; the others stay behind it for downgrades.
    ordered = sorted(model.profile.modes, key=lambda m: m is not preferred)
    return [m for m in ordered if m not in demoted] or [model.profile.modes[-1]]


def _judge_mode(model: Model, task: TaskDeclaration[Any, Any], mode: OutputMode, *, ignored: bool, clean: bool) -> None:
    key = (model.key, task.fingerprint)
    if ignored:
        state.demotions.ignored(key, mode)
    elif clean:
        state.demotions.followed(key, mode)


def rejected_modes() -> dict[tuple[str, str], frozenset[OutputMode]]:
    """What this process learned so far: (model key, task fingerprint) -> the modes its server rejected."""
    return state.demotions.refusals()


def learn_rejected_modes(learned: Mapping[tuple[str, str], Iterable[OutputMode]]) -> None:
    """Start from what another process learned (the `robustprompt` command keeps it in its results store)."""
    for key, modes in learned.items():
        for mode in modes:
            state.demotions.rejected(key, mode)


def _context_budget(model: Model) -> int:
    """Prompt tokens left after the output's share. Unless the user set a cap, the output's share is the model's
    maximum output, but at most a quarter of the window: some models may spend their whole window on output."""
    profile = model.profile
    output = model.settings.max_output_tokens or min(profile.max_output_tokens, profile.context_window // 4)
    return profile.context_window - output


def _pool(task: TaskDeclaration[Any, Any], config: Configuration) -> Sequence[Pair]:
    """The examples `config` chooses from: the task's, unless it carries a selection of its own."""
    return task.examples if config.pool is None else config.pool


def _ranking_embed(model: Model, config: Configuration) -> Embed | None:
    """The embedding function `nearest` ranks examples by: the configuration's embedder's, else the model's own.
    None for every other example choice, which ranks by no embeddings."""
    if config.examples != "nearest":
        return None
    if config.embedder is None:
        return embedder(model)
    found = embedder(embedding_model(config.embedder))
    if found is None:
        raise ConfigError(
            f"{config.embedder!r}, the embedder of the configuration {config.label!r}, gives no embeddings: "
            "name a model whose backend embeds text (the embedded runtime's), or drop embedder="
        )
    return found


def _decoding_spec(
    task: TaskDeclaration[Any, Any], pool: Sequence[Pair], input_json: str, config: Configuration
) -> OutputSpec:
    """The schema the answer is decoded by: the task's, its copied fields limited to this input's spans when the
    configuration says so. The answer is still validated against the task's own."""
    if not config.spans:
        return task.spec
    schema = copied_schema(task.spec.schema, pool, input_json)
    if schema is None:
        raise ConfigError(
            f"the configuration {config.label!r} copies spans, and no field of {task.name!r}'s output is copied "
            "from the input in every example (a string field as a run of its words, an integer as a number "
            "written in it): drop spans=, or adapt again"
        )
    return replace(task.spec, schema=schema)


def _render(
    task: TaskDeclaration[Any, Any], input_json: str, model: Model, mode: OutputMode, config: Configuration
) -> Prompt:
    """Render as `config` says, with as many of its chosen examples as fit the context window (minus the output
    budget), in the order it shows them."""
    pool = _pool(task, config)
    chosen = choose_examples(config.examples, config.k, pool, input_json, _ranking_embed(model, config))
    spec = _decoding_spec(task, pool, input_json, config)

    def rendered(indices: Sequence[int], dropped: tuple[int, ...] = ()) -> Prompt:
        prompt = render_configured(config, task.instructions, [pool[i] for i in indices], input_json, spec, mode)
        return replace(prompt, dropped_examples=dropped)

    full = rendered(chosen)
    budget = _context_budget(model)
    size = len(full.system.encode()) + sum(len(m.content.encode()) + _EXAMPLE_OVERHEAD for m in full.messages)
    if size <= budget:  # a token is at least one byte: it fits without counting
        return full
    count = model.backend.count_tokens
    bare = rendered(())
    fixed = count(bare.system).tokens + sum(count(m.content).tokens for m in bare.messages) + 2 * _EXAMPLE_OVERHEAD
    shown = [(format_input(config.input_format, pool[i][0]), pool[i][1]) for i in chosen]
    sizes = [count(i).tokens + count(o).tokens + _EXAMPLE_OVERHEAD for i, o in shown]
    kept, dropped = fit_examples(fixed, sizes, budget)
    if fixed > budget:
        raise ContextLengthError(
            f"the prompt needs about {fixed} tokens without examples, over the {budget} left in "
            f"{model.name}'s context window after the output budget: shorten the input or pick a larger model",
            provider=model.profile.provider,
            model=model.profile.model_id,
        )
    return rendered([chosen[i] for i in kept], tuple(sorted(chosen[i] for i in dropped)))


@dataclass(frozen=True, slots=True)
class _Checked:
    output: Any
    repairs: tuple[str, ...]
    errors: tuple[str, ...]
    clean: bool  # parsed as JSON with no repair at all


def _check(task: TaskDeclaration[Any, Any], completion: Completion) -> _Checked:
    try:
        parsed = parse(completion.text, task.spec.schema, text_output=task.output_type is str)
    except ParseError as exc:
        return _Checked(None, (), _with_truncation(completion, [str(exc)]), clean=False)
    output, errors = task.validator.validate(parsed.value)
    return _Checked(output, parsed.repairs, _with_truncation(completion, errors), clean=not parsed.repairs)


def _with_truncation(completion: Completion, errors: list[str]) -> tuple[str, ...]:
    if errors and completion.truncated:
        errors.insert(0, "the answer was cut off at the output token limit: answer more briefly")
    return tuple(errors)


def _spent_error(
    reason: str, run: Run[Any], last: RobustPromptError | None, model: Model, budget: _Budget
) -> RobustPromptError:
    """The error that ends a call whose budget ran out: the last failure's kind, else a timeout for the deadline."""
    if isinstance(last, OutputError):  # the model answered, only never validly
        return OutputError(f"{run.task} on {model.name}: {reason} ({last})", run)
    if isinstance(last, ProviderError):
        return last
    if budget.timed_out:
        err = ProviderTimeout(reason, provider=model.profile.provider, model=model.profile.model_id, code=DEADLINE)
        err.run = run
        return err
    return OutputError(f"{run.task} on {model.name}: {reason}", run)


def _attempt(number: int, model: Model, mode: OutputMode, sent: Sent, **fields: Any) -> Attempt:
    if fields.get("usage") is not None:  # any backend's report, the user's own included, is data from outside
        fields["usage"] = believable(fields["usage"], model.profile, model.settings)
    cost = price(model.profile, fields.get("usage"))
    return Attempt(
        number,
        model.name,
        mode,
        transport_errors=sent.transport_errors,
        latency=sent.latency,
        first_chunk=sent.first_chunk,
        first_partial=sent.first_partial,
        cost=cost,
        **fields,
    )


def _failed_attempt(number: int, model: Model, mode: OutputMode, sent: Sent, error: ProviderError) -> Attempt:
    return _attempt(number, model, mode, sent, errors=(f"{type(error).__name__}: {error}",))


def _refused_attempt(number: int, model: Model, mode: OutputMode, sent: Sent, completion: Completion) -> Attempt:
    reason = completion.refusal or "no reason given"
    errors = (f"refused: {reason}",)
    return _attempt(
        number, model, mode, sent, raw=completion.text, usage=completion.usage, finish_reason="refusal", errors=errors
    )


def _answered_attempt(
    number: int, model: Model, mode: OutputMode, sent: Sent, completion: Completion, checked: _Checked
) -> Attempt:
    return _attempt(
        number,
        model,
        mode,
        sent,
        raw=completion.text,
        errors=checked.errors,
        repairs=checked.repairs,
        usage=completion.usage,
        finish_reason=completion.finish_reason,
    )


def _refusal(model: Model, completion: Completion, run: Run[Any]) -> RefusalError:
    reason = completion.refusal or "no reason given"
    refusal = RefusalError(
        f"the model refused: {reason}", provider=model.profile.provider, model=model.profile.model_id
    )
    refusal.run = run
    return refusal


def _base(
    task: TaskDeclaration[Any, Any], input_json: str, model: Model, mode: OutputMode, run: Run[Any], policy: Policy
) -> Prompt:
    """The prompt for `mode` before any re-ask, with the examples it had to drop and its configuration noted on the
    run."""
    config, _ = configuration_for(task, model, policy)
    run.configuration = config.label
    base = _render(task, input_json, model, mode, config)
    run.dropped_examples = base.dropped_examples
    return base


def _reask(base: Prompt, completion: Completion, checked: _Checked, policy: Policy) -> Prompt:
    return with_reask(
        base,
        completion.text,
        checked.errors,
        max_answer_chars=policy.reask_answer_chars,
        max_errors=policy.reask_max_errors,
    )


Flow = Generator[Request, Sent, Any]


def _flow(
    task: TaskDeclaration[Any, Any], input_json: str, model: Model, policy: Policy, run: Run[Any], budget: _Budget
) -> Flow:
    """Attempts on one model until a validated output (returned) or a typed error (raised, `run` attached)."""
    modes = _modes(model, task, policy, configuration_for(task, model, policy)[0].mode)
    mode = modes.pop(0)
    prompt = base = _base(task, input_json, model, mode, run, policy)
    reasks = 0
    last: RobustPromptError | None = None
    while True:
        if reason := budget.spent():
            raise _spent_error(reason, run, last, model, budget)
        sent = yield Request(model, prompt, budget.tries(policy.transport_retries), budget.deadline)
        budget.used += sent.requests
        number = len(run.attempts) + 1
        result = sent.result
        if isinstance(result, ProviderError):
            run.attempts.append(_failed_attempt(number, model, mode, sent, result))
            if isinstance(result, SchemaRejectedError) and modes and policy.mode is None:
                state.demotions.rejected((model.key, task.fingerprint), mode)
                mode = modes.pop(0)
                prompt = base = _base(task, input_json, model, mode, run, policy)
                last = result
                continue
            result.run = run
            raise result
        if result.finish_reason == "refusal":
            run.attempts.append(_refused_attempt(number, model, mode, sent, result))
            raise _refusal(model, result, run)
        checked = _check(task, result)
        run.attempts.append(_answered_attempt(number, model, mode, sent, result, checked))
        # Constrained decoding yields clean JSON; needing repairs suggests the server ignored the mode (as some
        # servers do with options they dropped): this call moves on if the answer failed, and repeated signs
        # demote the mode for later calls (`_demotions`).
        ignored = mode.constrained and not checked.clean and not result.truncated and policy.mode is None
        if mode.constrained and policy.mode is None:
            _judge_mode(model, task, mode, ignored=ignored, clean=checked.clean)
        if not checked.errors:
            return checked.output
        errors = "; ".join(checked.errors)
        last = OutputError(f"{task.name} on {model.name}: no valid output after {number} attempt(s): {errors}", run)
        if ignored and modes:
            mode = modes.pop(0)
            base = _base(task, input_json, model, mode, run, policy)
        elif reasks >= policy.reasks:
            raise last
        else:
            reasks += 1
        prompt = _reask(base, result, checked, policy)


def _count_against_breaker(model: Model, error: RobustPromptError, policy: Policy) -> bool:
    """Provider failures trip the breaker; a model's bad answers do not (they are the re-ask's business), nor does
    the call's own deadline, nor a refused output mode: that is this request's shape, which the next mode or
    configuration changes, not the model's health (adapt tries every mode, and one a server does not know must
    not shut the model for the calls after it). True when the breaker got a verdict."""
    if isinstance(error, ModelNotFoundError):
        state.breakers.dead(model.key, f"{model.name} answered: {error.message}")
        return True
    if (
        isinstance(error, ProviderError)
        and not isinstance(error, (RefusalError, ContextLengthError, SchemaRejectedError))
        and error.code != DEADLINE
    ):
        state.breakers.failure(model.key, policy.breaker_failures)
        return True
    return False


def _chain(
    task: TaskDeclaration[Any, Any], input_json: str, models: list[Model], policy: Policy, run: Run[Any]
) -> Generator[Request, Sent, Run[Any]]:
    budget = _Budget(policy.max_attempts, None if policy.deadline is None else time.monotonic() + policy.deadline)
    error: RobustPromptError | None = None
    chain, tried = list(models), list[Model]()
    while chain:
        model = chain.pop(0)
        tried.append(model)
        warn_retirement(model.profile)
        if model.profile.retired is not None and model.profile.retired <= dt.date.today():
            state.breakers.suspect(model.key, f"{model.name} was retired on {model.profile.retired} (catalog)")
        if (reason := budget.spent()) is not None:
            error = error or _spent_error(reason, run, None, model, budget)
            break
        if (closed := state.breakers.allow(model.key, policy.breaker_cooldown)) is not None:
            run.notes.append(f"skipped {model.name}: {closed}")
            if (dead := state.breakers.dead_reason(model.key)) is not None:
                error = error or _gone(model, dead)
                _replace(model, policy, run, chain, tried)
            continue
        run.model = model.name
        judged = False  # an allowed call must end with a verdict for the breaker, or free its trial slot
        try:
            run.output = yield from _flow(task, input_json, model, policy, run, budget)
            state.breakers.success(model.key)
            judged = True
        except (ProviderError, OutputError) as exc:
            judged = _count_against_breaker(model, exc, policy)
            run.notes.append(f"{model.name} failed: {type(exc).__name__}: {exc}")
            error = exc
            if isinstance(exc, ModelNotFoundError):
                _replace(model, policy, run, chain, tried)
            continue
        finally:  # also when the call is cancelled or a bug escapes
            if not judged:
                state.breakers.release(model.key)
        run.latency = time.monotonic() - budget.started
        return run
    run.latency = time.monotonic() - budget.started
    if error is None:  # every model was skipped by its breaker
        error = ProviderError(f"no model to call: {'; '.join(run.notes)}", model=models[0].name)
    run.error = f"{type(error).__name__}: {error}"
    if isinstance(error, ProviderError):
        error.run = run
    raise error


def _replace(gone: Model, policy: Policy, run: Run[Any], chain: list[Model], tried: list[Model]) -> None:
    """With `Policy(on_retired="replace")`, the catalog's replacement for a model that is gone is called next."""
    if policy.on_retired != "replace" or (substitute := replacement_for(gone)) is None:
        return
    if any(m.key == substitute.key for m in (*tried, *chain)):
        return
    warn_replaced(gone.name, substitute.name)
    run.notes.append(f"{gone.name} is gone: calling its replacement {substitute.name} (Policy(on_retired='replace'))")
    chain.insert(0, substitute)


def _gone(model: Model, reason: str) -> ModelNotFoundError:
    """The error for a call to a model known dead in this process, naming what the catalog says replaces it."""
    replacement = model.profile.replacement
    hint = (
        f"; its replacement is {replacement}. Prove it on your cases first: robustprompt migrate TASK --cases FILE "
        f"--from {model.name} --to {replacement}"
        if replacement
        else "; choose another model, or give Policy(fallbacks=...)"
    )
    return ModelNotFoundError(
        f"not called again in this process: {reason}{hint}",
        provider=model.profile.provider,
        model=model.profile.model_id,
    )


def _input_json(task: TaskDeclaration[Any, Any], value: Any) -> str:
    try:
        return task.input_json(value)
    except Exception as exc:
        if contained(exc):
            raise typed(exc, None) from exc
        raise


# The drivers. Around the pure flow they carry requests, read and fill the response cache, and tell the hooks.


class _Call:
    """One call as both drivers run it; they differ only in how they send a request and reach the cache file."""

    def __init__(
        self,
        task: TaskDeclaration[Any, Any],
        value: Any,
        model: Model | str | None,
        policy: Policy | None,
        cache: Cache | None,
    ) -> None:
        self.task = task
        self.policy = policy or Policy()
        self.models = models_for(model, self.policy)
        self.input_json = _input_json(task, value)
        self.cache = enabled(cache)
        self.run: Run[Any] = Run(task.name, task.fingerprint, self.models[0].name)
        self.result = self.run  # what the caller gets: the flow's run, or one served from the cache
        self.cached = False
        self.hooks = hooks.notifier(CallInfo(task, self.models[0], self.policy))
        self._flow = _chain(task, self.input_json, self.models, self.policy, self.run)
        self._answered_by: Model | None = None

    @contextlib.contextmanager
    def observed(self) -> Iterator[None]:
        """Tell the hooks the call started, and how it ended, whatever ends it."""
        self.hooks.run_start()
        try:
            yield
        except BaseException as exc:
            self._flow.close()  # its breaker slot is freed now, not when the generator is collected
            error = typed(exc, self.run) if contained(exc) else exc
            self.hooks.run_end(self.run, error)
            if error is exc:
                raise
            raise error from exc
        self.hooks.run_end(self.result, None, cached=self.cached)

    def lookup(self) -> bool:
        """Whether the cache served the call (file I/O)."""
        model = self.models[0]
        config, _ = configuration_for(self.task, model, self.policy)
        served = None
        if self.cache is not None:
            served = self.cache.get(self.task, model, self.policy.mode, config.key, self.input_json)
        if served is not None:
            served.configuration = config.label
            self.result, self.cached = served, True
        return self.cached

    def store(self) -> None:
        """Keep the output in the cache, under the model that gave it (file I/O)."""
        if self.cache is not None and self._answered_by is not None:
            model = self._answered_by
            key = configuration_for(self.task, model, self.policy)[0].key
            self.cache.put(self.task, model, self.policy.mode, key, self.input_json, self.run)

    def first(self) -> Request:
        return self._started(next(self._flow))

    async def embed_ahead(self) -> None:
        """Embed what `nearest` will rank for the first request, off the event loop (the async drivers' step before
        `first`), so the render finds the vectors kept: the embedded runtime keeps every vector."""
        model = self.models[0]
        config, _ = configuration_for(self.task, model, self.policy)
        embed = _ranking_embed(model, config)
        if embed is not None:
            await asyncio.to_thread(embed, ranked_texts(_pool(self.task, config), self.input_json))

    def close(self) -> None:
        """Abandon the flow if it is still running (a consumer left a stream): its breaker slot is freed now."""
        self._flow.close()

    def step(self, request: Request, sent: Sent) -> Request | None:
        """Give the flow what `request` brought back: the next request, or None once the run has its output."""
        attempts = len(self.run.attempts)
        try:
            following: Request | None = self._flow.send(sent)
        except StopIteration:
            following, self._answered_by = None, request.model
        finally:
            if len(self.run.attempts) > attempts:  # the flow records every attempt, unless a bug broke it
                self.hooks.attempt_end(request.model, self.run.attempts[-1], sent.result)
        return None if following is None else self._started(following)

    def _started(self, request: Request) -> Request:
        self.hooks.attempt_start(len(self.run.attempts) + 1, request.model, request.prompt.mode)
        return request


def run_sync(
    task: TaskDeclaration[Any, O],
    value: Any,
    model: Model | str | None,
    policy: Policy | None,
    cache: Cache | None = None,
) -> Run[O]:
    call = _Call(task, value, model, policy, cache)
    with call.observed():
        if not call.lookup():
            request: Request | None = call.first()
            while request is not None:
                request = call.step(request, send(request, call.policy))
            call.store()
    return call.result


async def run_async(
    task: TaskDeclaration[Any, O],
    value: Any,
    model: Model | str | None,
    policy: Policy | None,
    cache: Cache | None = None,
) -> Run[O]:
    call = _Call(task, value, model, policy, cache)
    with call.observed():
        # SQLite may wait on another writer: off the event loop, and only when there is a cache to read.
        if call.cache is None or not await asyncio.to_thread(call.lookup):
            await call.embed_ahead()
            request: Request | None = call.first()
            while request is not None:
                request = call.step(request, await asend(request, call.policy))
            if call.cache is not None:
                await asyncio.to_thread(call.store)
    return call.result


# Calls whose first request a provider batch carries (`_batch_api`): the same flow, parse, validate and re-ask.


def first_prompt(task: TaskDeclaration[Any, Any], value: Any, model: Model, policy: Policy) -> Prompt:
    """The prompt a live call of `task` on `value` would send `model` first: what a batch item carries."""
    run: Run[Any] = Run(task.name, task.fingerprint, model.name)
    flow = _flow(task, _input_json(task, value), model, policy, run, _Budget(None, None))
    try:
        return next(flow).prompt
    finally:
        flow.close()


def answered(
    task: TaskDeclaration[Any, O], value: Any, model: Model, policy: Policy, cost_share: float = 1.0
) -> Generator[Request, Sent, Run[O]]:
    """A call on `model` whose first request is answered elsewhere (a provider batch's item), as a flow: it yields
    each request and receives what it brought back. The driver answers the first from the batch and sends a
    re-ask or a downgraded mode after it live, within the policy's budget; the first attempt costs `cost_share`
    of the list price (a batch's discount)."""
    call = _Call(task, value, model, replace(policy, fallbacks=()), None)
    with call.observed():
        request: Request | None = call.first()
        assert request is not None
        try:
            request = call.step(request, (yield request))
        finally:
            _share_first_cost(call.run, cost_share)
        while request is not None:
            request = call.step(request, (yield request))
    return call.result


def _share_first_cost(run: Run[Any], share: float) -> None:
    if run.attempts and run.attempts[0].cost is not None and share != 1.0:
        run.attempts[0] = replace(run.attempts[0], cost=run.attempts[0].cost * share)
