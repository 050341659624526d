"""The one exception tree, grouped by who must act.

```
RobustPromptError
├── ConfigError            the user must fix code or settings (bad task, unknown model, missing key)
├── ProviderError          the provider failed the call (carries status, provider, model, retry_after)
│   ├── RateLimitError         429 rate limit                                  retryable
│   ├── OverloadedError        503 / 529 overload                              retryable
│   ├── ServerError            other 5xx, 408, 409                             retryable
│   ├── ProviderTimeout        the call did not finish in time                 retryable
│   ├── ProviderConnectionError reset, refused, truncated or unreadable body   retryable
│   ├── ModelNotFoundError     unknown or retired model                        permanent
│   ├── ContextLengthError     the prompt does not fit the model               permanent
│   ├── SchemaRejectedError    the server rejected the output mode or schema   downgrade the mode
│   ├── AuthError              401 / 403                                       permanent
│   ├── QuotaExceededError     out of credit (not a rate limit)                permanent
│   ├── BadRequestError        any other 4xx                                   permanent
│   └── RefusalError           the model refused to answer                     permanent for this input
├── OutputError            the model answered, but no valid output within the budget (carries the Run)
└── PipelineError          a pipeline link failed and declared no default (names the link; .input, .run)
```
(PipelineError lives with the pipelines, in _pipeline.py.)
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any, ClassVar

from robustprompt._secrets import scrub

if TYPE_CHECKING:
    from robustprompt._run import Run

__all__ = [
    "AuthError",
    "BadRequestError",
    "BatchItemError",
    "ConfigError",
    "ContextLengthError",
    "ModelNotFoundError",
    "OutputError",
    "OverloadedError",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "QuotaExceededError",
    "RateLimitError",
    "RefusalError",
    "RobustPromptError",
    "SchemaRejectedError",
    "ServerError",
    "Uncontained",
    "contained",
    "run_of",
    "typed",
]


class RobustPromptError(Exception):
    """Base of every error robustprompt raises."""


class ConfigError(RobustPromptError):
    """The user must fix code or settings; retrying cannot help."""


class ProviderError(RobustPromptError):
    """A provider failed the call. `retryable` says whether the same request may succeed later."""

    retryable: ClassVar[bool] = False

    def __init__(
        self,
        message: str,
        *,
        provider: str = "",
        model: str = "",
        status: int | None = None,
        code: str | None = None,
        retry_after: float | None = None,
        body: str | None = None,
    ) -> None:
        super().__init__(message)
        self.message = message
        self.provider = provider
        self.model = model
        self.status = status
        self.code = code
        self.retry_after = retry_after
        self.body = body
        self.run: Run[Any] | None = None  # set when the error ends a call: the attempts made so far

    def recast(self, cls: type[ProviderError], message: str | None = None) -> ProviderError:
        """The same error as another class (an adapter knows better than the status code), context kept."""
        err = _rebuild(cls, message or self.message, {**self.__dict__, "message": message or self.message})
        err.__cause__ = self.__cause__
        return err

    def redact(self, secret: str) -> None:
        """Take `secret` (an API key some APIs echo back), whole or as a masked tail, out of this error's texts."""
        self.message = scrub(self.message, secret)
        self.body = scrub(self.body, secret) if self.body else self.body
        self.code = scrub(self.code, secret) if self.code else self.code
        self.args = (self.message,)

    def __str__(self) -> str:
        where = ":".join(p for p in (self.provider, self.model) if p)
        status = f" (HTTP {self.status})" if self.status is not None else ""
        return f"{where}{status}: {self.message}" if where else f"{self.message}{status}"

    def __reduce__(self) -> tuple[Any, ...]:
        return _rebuild, (type(self), self.message, self.__dict__)


def _rebuild(cls: type[ProviderError], message: str, state: dict[str, Any]) -> ProviderError:
    err = cls(message)
    err.__dict__.update(state)
    return err


class RateLimitError(ProviderError):
    retryable = True


class OverloadedError(ProviderError):
    retryable = True


class ServerError(ProviderError):
    retryable = True


class ProviderTimeout(ProviderError):
    retryable = True


class ProviderConnectionError(ProviderError):
    retryable = True


class ModelNotFoundError(ProviderError):
    """The model does not exist or was retired. Never retried: choose another model."""


class ContextLengthError(ProviderError):
    """The prompt does not fit the model's context window."""


class SchemaRejectedError(ProviderError):
    """The server rejected the output mode or the schema; the engine downgrades the mode."""


class AuthError(ProviderError):
    """The API key is missing, wrong, or lacks permission."""


class QuotaExceededError(ProviderError):
    """The account is out of quota or credit; waiting will not help."""


class BadRequestError(ProviderError):
    """The provider rejected the request as invalid."""


class BatchItemError(ProviderError):
    """A provider batch gave this item no answer: the batch expired or was cancelled before it ran (`code`
    "expired" / "canceled"), the whole batch failed ("failed"), its result line could not be read ("malformed"), or
    there was none ("missing")."""


class RefusalError(ProviderError):
    """The model refused to produce the output (a safety refusal or content filter)."""


class OutputError(RobustPromptError):
    """The model answered, but no answer validated within the budget. `run` holds every attempt."""

    def __init__(self, message: str, run: Run[Any]) -> None:
        super().__init__(message)
        self.run = run


def run_of(error: RobustPromptError) -> Run[Any] | None:
    """The Run an error ended, when it carries one (provider and output errors do)."""
    if isinstance(error, (OutputError, ProviderError)):
        return error.run
    return None


class Uncontained(Exception):
    """Base of errors that end the whole run, never one call (a test cassette with no recording): robustprompt
    does not turn them into a call's outcome, where a fallback or a default could make them pass."""


_UNEXPECTED_CHARS = 500


def contained(exc: BaseException) -> bool:
    """Whether `exc`, raised inside one call, must become that call's error (see `typed`)."""
    return isinstance(exc, Exception) and not isinstance(exc, (RobustPromptError, Uncontained))


def typed(exc: BaseException, run: Run[Any] | None) -> RobustPromptError:
    """A contained exception (a bug, here or in code of the user's such as a check) as an error of the tree, so
    that one input's failure stays that input's: an OutputError once the model has answered, a ConfigError
    before. The original stays as `__cause__`."""
    text = f"unexpected {type(exc).__name__}: {str(exc)[:_UNEXPECTED_CHARS]} (its traceback is in __cause__)"
    err: RobustPromptError = OutputError(text, run) if run is not None and run.attempts else ConfigError(text)
    err.__cause__ = exc
    return err
