from __future__ import annotations

import pytest

import robustprompt as rp
from robustprompt import _catalog


def test_unprefixed_name_suggests_the_catalog_entry() -> None:
    with pytest.raises(rp.ConfigError, match=r"unknown model 'gpt4o' — did you mean 'openai:gpt-4o'"):
        rp.model("gpt4o")


def test_unknown_provider_suggests_a_known_one() -> None:
    with pytest.raises(rp.ConfigError, match=r"unknown provider 'opnai'.*did you mean 'openai'"):
        rp.model("opnai:gpt-4o")


def test_missing_api_key_names_the_variable(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    with pytest.raises(rp.ConfigError, match="set OPENAI_API_KEY, or pass api_key="):
        rp.model("openai:gpt-4.1-mini")


def test_key_from_the_environment_never_shows_in_repr(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OPENAI_API_KEY", "sk-planted-secret-123")
    m = rp.model("openai:gpt-4.1-mini")
    assert "sk-planted" not in repr(m)
    assert "sk-planted" not in repr(m.backend)


def test_catalog_profiles_and_user_override() -> None:
    profile = _catalog.lookup("openai:gpt-4.1-mini")
    assert profile is not None
    assert profile.modes[0] is rp.OutputMode.JSON_SCHEMA
    assert profile.tokenizer == "o200k_base"
    retired = _catalog.lookup("openai:gpt-3.5-turbo")
    assert retired is not None and retired.retired is not None
    custom = rp.ModelProfile("openai", "my-finetune", modes=(rp.OutputMode.JSON_OBJECT,), context_window=4096)
    rp.register_model(custom)
    assert rp.model("openai:my-finetune", api_key="k").profile is custom


def test_unknown_model_of_a_known_provider_gets_provider_defaults() -> None:
    m = rp.model("openai:gpt-99-preview", api_key="k")
    assert m.profile.model_id == "gpt-99-preview"
    assert rp.OutputMode.JSON_SCHEMA in m.profile.modes


def test_default_model_without_anything_installed_says_how_to_choose(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustprompt import _resolve

    monkeypatch.delenv("ROBUSTPROMPT_MODEL", raising=False)
    monkeypatch.setattr(_resolve.importlib.util, "find_spec", lambda name: None)
    with pytest.raises(rp.ConfigError, match="ROBUSTPROMPT_MODEL"):
        _resolve.default_model()


def test_unknown_local_model_lists_the_choices() -> None:
    with pytest.raises(rp.ConfigError, match="local:smollm2"):
        rp.model("local:smollm3")


def test_policy_rejects_negative_budgets() -> None:
    with pytest.raises(rp.ConfigError, match="reasks"):
        rp.Policy(reasks=-1)


def test_a_name_resolves_again_after_the_catalog_changes(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustprompt._resolve import resolve

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    before = resolve("openai:gpt-4.1-nano").profile
    custom = rp.ModelProfile("openai", "gpt-4.1-nano", context_window=1000)
    rp.register_model(custom)
    assert resolve("openai:gpt-4.1-nano").profile is custom
    rp.register_model(before)


def test_an_async_call_on_a_handle_given_only_a_sync_client_goes_through_that_client() -> None:
    import asyncio

    import httpx

    from robustprompt.testing._openai_server import chat_reply
    from tests.models import Review, Sentiment, classify_task

    seen = []

    def handler(request: httpx.Request) -> httpx.Response:
        seen.append(request.url.host)
        reply = chat_reply('{"label": "positive"}')
        return httpx.Response(200, content=reply.body, headers={"content-type": "application/json"})

    with httpx.Client(transport=httpx.MockTransport(handler)) as client:
        model = rp.model("openai:gpt-4.1-mini", api_key="k", http_client=client)
        assert asyncio.run(classify_task().acall(Review(text="x"), model=model)) == Sentiment(label="positive")
    assert seen == ["api.openai.com"]  # the mock answered: nothing went around it to the network


@pytest.mark.parametrize("timeout", [0, -1, float("nan"), float("inf")])
def test_a_timeout_that_is_not_a_positive_number_is_refused(timeout: float) -> None:
    with pytest.raises(rp.ConfigError, match="timeout must be a finite number of seconds > 0"):
        rp.model("openai:gpt-4.1-mini", api_key="k", timeout=timeout)


@pytest.mark.parametrize(
    ("url", "message"),
    [
        ("http://127.0.0.1:9/v1\n", "whitespace or a control character"),
        ("ftp://example.invalid/v1", "must start with http:// or https://"),
    ],
)
def test_a_bad_base_url_is_refused_at_construction(url: str, message: str) -> None:
    with pytest.raises(rp.ConfigError, match=message):
        rp.model("openai:gpt-4.1-mini", api_key="k", base_url=url)


def test_a_base_url_without_a_scheme_is_a_config_error_not_retried_nor_counted_by_the_breaker() -> None:
    from tests.models import Review, classify_task

    model = rp.model("openai:gpt-4.1-mini", api_key="k", base_url="127.0.0.1:9/v1")
    for _ in range(6):  # more than the breaker's threshold: it never opens
        with pytest.raises(rp.ConfigError, match="must start with http:// or https://"):
            classify_task().run(Review(text="x"), model=model, policy=rp.Policy(backoff_initial=0.001))
    assert rp._state.state.breakers.allow(model.key, 30) is None
