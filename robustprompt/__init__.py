"""robustprompt: typed LLM tasks that survive model changes.

```python
import robustprompt as rp

classify = rp.Task("classify", input=Review, output=Sentiment, instructions="Classify the review.",
                   examples=[rp.Example(Review(text="Loved it"), Sentiment(label="positive"))])
classify(Review(text="Meh"), model="local:smollm2")   # -> a validated Sentiment, or a typed error
```
"""

from robustprompt._adaptation import Adaptation, AdaptationWarning, Score
from robustprompt._batch import Batch
from robustprompt._batch_api import BatchJob, BatchProgress
from robustprompt._cache import Cache
from robustprompt._calling import Task, task
from robustprompt._catalog import register as register_model
from robustprompt._completion import Completion, Usage
from robustprompt._errors import (
    AuthError,
    BadRequestError,
    BatchItemError,
    ConfigError,
    ContextLengthError,
    ModelNotFoundError,
    OutputError,
    OverloadedError,
    ProviderConnectionError,
    ProviderError,
    ProviderTimeout,
    QuotaExceededError,
    RateLimitError,
    RefusalError,
    RobustPromptError,
    SchemaRejectedError,
    ServerError,
)
from robustprompt._hooks import AttemptEnd, AttemptStart, CallInfo, Hook, RunEnd, hooks
from robustprompt._ledger import Ledger, LedgerLine
from robustprompt._lifecycle import ModelRetirementWarning
from robustprompt._model import Model
from robustprompt._partial import Partial, Restart
from robustprompt._pipeline import Link, LinkTrace, Pipeline, PipelineBatch, PipelineError, PipelineRun, Step
from robustprompt._policy import Policy
from robustprompt._profile import ModelProfile, Settings
from robustprompt._prompt import Message, OutputMode, OutputSpec, Prompt
from robustprompt._renderings import Configuration
from robustprompt._resolve import model
from robustprompt._run import Attempt, Run
from robustprompt._state import reset
from robustprompt._task import Example
from robustprompt._version import __version__

__all__ = [
    "Adaptation",
    "AdaptationWarning",
    "Attempt",
    "AttemptEnd",
    "AttemptStart",
    "AuthError",
    "BadRequestError",
    "Batch",
    "BatchItemError",
    "BatchJob",
    "BatchProgress",
    "Cache",
    "CallInfo",
    "Completion",
    "ConfigError",
    "Configuration",
    "ContextLengthError",
    "Example",
    "Hook",
    "Ledger",
    "LedgerLine",
    "Link",
    "LinkTrace",
    "Message",
    "Model",
    "ModelNotFoundError",
    "ModelProfile",
    "ModelRetirementWarning",
    "OutputError",
    "OutputMode",
    "OutputSpec",
    "OverloadedError",
    "Partial",
    "Pipeline",
    "PipelineBatch",
    "PipelineError",
    "PipelineRun",
    "Policy",
    "Prompt",
    "ProviderConnectionError",
    "ProviderError",
    "ProviderTimeout",
    "QuotaExceededError",
    "RateLimitError",
    "RefusalError",
    "Restart",
    "RobustPromptError",
    "Run",
    "RunEnd",
    "SchemaRejectedError",
    "Score",
    "ServerError",
    "Settings",
    "Step",
    "Task",
    "Usage",
    "__version__",
    "hooks",
    "model",
    "register_model",
    "reset",
    "task",
]
