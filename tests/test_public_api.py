import inspect

import robustprompt as rp
import robustprompt.testing


def test_public_names_are_pinned() -> None:
    assert sorted(rp.__all__) == sorted(
        [
            "Attempt",
            "Adaptation",
            "AdaptationWarning",
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
    )
    for name in rp.__all__:
        assert getattr(rp, name) is not None


def test_batch_forms_take_how_a_batch_runs_as_one_object() -> None:
    for form in ("map", "amap", "stream", "astream"):
        task_form = list(inspect.signature(getattr(rp.Task, form)).parameters)
        assert task_form == ["self", "inputs", "model", "policy", "cache", "batch", "runs", "ledger"]
        assert list(inspect.signature(getattr(rp.Pipeline, form)).parameters) == ["self", "inputs", "batch"]
    assert list(inspect.signature(rp.Batch).parameters) == ["concurrency", "rpm", "tpm", "progress", "clock"]


def test_testing_module_names() -> None:
    assert set(robustprompt.testing.__all__) >= {
        "FunctionModel",
        "ScriptedModel",
        "OpenAIServer",
        "FaultServer",
        "cassette",
        "Cassette",
        "CassetteError",
        "KITS",
        "ProviderKit",
        "kit",
    }


def test_error_tree() -> None:
    for cls in (
        rp.RateLimitError,
        rp.OverloadedError,
        rp.ServerError,
        rp.ProviderTimeout,
        rp.ProviderConnectionError,
    ):
        assert issubclass(cls, rp.ProviderError) and cls.retryable
    for cls in (
        rp.ModelNotFoundError,
        rp.ContextLengthError,
        rp.SchemaRejectedError,
        rp.AuthError,
        rp.QuotaExceededError,
        rp.BadRequestError,
        rp.RefusalError,
    ):
        assert issubclass(cls, rp.ProviderError) and not cls.retryable
    assert issubclass(rp.ConfigError, rp.RobustPromptError)
    assert issubclass(rp.OutputError, rp.RobustPromptError)


def test_adapters_are_a_subpackage_not_a_top_level_package() -> None:
    import robustprompt.adapters

    assert robustprompt.adapters.__name__ == "robustprompt.adapters"
    assert robustprompt.adapters.__file__ is not None
