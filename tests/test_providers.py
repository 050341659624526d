"""Providers: the registry, the adapter modules and the catalog name the same providers; a vendor that speaks a
wire robustprompt has is one catalog entry; process memory resets through `robustprompt.reset`."""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from importlib import resources
from pathlib import Path
from typing import Any

import httpx
import pytest

import robustprompt as rp
from robustprompt import _catalog
from robustprompt.adapters import _registry
from robustprompt.testing import ScriptedModel, cassette
from robustprompt.testing._openai_server import OpenAIServer, chat_reply
from tests.models import Review, Sentiment, classify_task

ADAPTERS = Path(__file__).resolve().parent.parent / "adapters"


def _catalog_files() -> dict[str, Any]:
    folder = resources.files("robustprompt").joinpath("catalog")
    return {item.name: json.loads(item.read_text("utf-8")) for item in folder.iterdir() if item.name.endswith(".json")}


def test_every_registered_adapter_names_its_own_provider() -> None:
    for provider in _registry.BUILTIN:
        assert _registry.adapter_class(provider).provider == provider


def test_every_adapter_module_is_registered() -> None:
    modules = {p.stem for p in ADAPTERS.glob("*.py") if not p.name.startswith("_")}
    registered = {target.partition(":")[0].rpartition(".")[2] for target in _registry.BUILTIN.values()}
    assert modules == registered


def test_the_catalog_names_only_registered_providers() -> None:
    files = _catalog_files()
    known = set(_registry.providers())
    rows = {row["provider"] for data in files.values() for row in data.get("models", ())}
    assert rows <= known, f"catalog rows for providers no adapter serves: {sorted(rows - known)}"
    for name, data in files.items():
        # A file of models is named after their provider; vendors.json declares providers.
        assert {row["provider"] for row in data.get("models", ())} <= {name.removesuffix(".json")}
    vendors = {v.provider for v in _catalog.vendors()}
    assert vendors and vendors <= known and not vendors & set(_registry.BUILTIN)
    assert all(v.wire in _registry.BUILTIN for v in _catalog.vendors())


def test_tracing_names_come_from_the_adapters() -> None:
    assert _registry.telemetry("gemini") == _registry.Telemetry("gcp.gemini", "generate_content", False)
    assert _registry.telemetry("local") == _registry.Telemetry("local", None, True)
    assert _registry.telemetry("groq") == _registry.Telemetry("groq", None, False)  # a vendor: its own name
    assert _registry.telemetry("no-such-provider") == _registry.Telemetry("no-such-provider", None, False)


# ---------------------------------------------------------------- a vendor is one catalog entry


@pytest.fixture
def server() -> Iterator[OpenAIServer]:
    with OpenAIServer(api_key="acme-key") as srv:
        yield srv


@pytest.fixture
def one_more_entry(monkeypatch: pytest.MonkeyPatch) -> Iterator[dict[str, Any]]:
    """A catalog with one entry more than the shipped one, read by the same code as the shipped files."""
    shipped = _catalog._files()
    entry: dict[str, Any] = {}
    monkeypatch.setattr(_catalog, "_files", lambda: (*shipped, {"vendors": [entry]}))
    _catalog.shipped_vendors.cache_clear()
    yield entry
    monkeypatch.undo()
    _catalog.shipped_vendors.cache_clear()


def test_adding_an_openai_compatible_vendor_is_one_catalog_entry(
    one_more_entry: dict[str, Any], server: OpenAIServer, monkeypatch: pytest.MonkeyPatch
) -> None:
    one_more_entry.update(
        {
            "provider": "acme",
            "wire": "openai-compatible",
            "base_url": server.base_url,
            "api_key_env": ["ACME_API_KEY"],
            "quirks": {"modes": ["json_object", "prompted"], "extra_body": {"route": {"require": True}}},
        }
    )
    monkeypatch.setenv("ACME_API_KEY", "acme-key")
    assert "acme" in _registry.providers()
    model = rp.model("acme:fast-1", temperature=0)
    assert model.profile.provider == "acme" and model.profile.modes[0] is rp.OutputMode.JSON_OBJECT
    server.enqueue(chat_reply('{"label":"positive"}'))
    assert classify_task()(Review(text="great"), model=model) == Sentiment(label="positive")
    (request,) = server.requests
    assert request.headers["authorization"] == "Bearer acme-key"
    assert request.body["model"] == "fast-1" and request.body["route"] == {"require": True}
    assert request.body["response_format"]["type"] == "json_object"
    model.close()


def test_a_vendor_without_its_key_says_which_variable(
    one_more_entry: dict[str, Any], monkeypatch: pytest.MonkeyPatch
) -> None:
    one_more_entry.update(
        {
            "provider": "acme",
            "wire": "openai-compatible",
            "base_url": "http://x.invalid/v1",
            "api_key_env": ["ACME_KEY"],
        }
    )
    monkeypatch.delenv("ACME_KEY", raising=False)
    with pytest.raises(rp.ConfigError, match="set ACME_KEY"):
        rp.model("acme:m")


@pytest.mark.parametrize(
    ("entry", "problem"),
    [
        ({"provider": "acme", "wire": "openai-compatible", "base_url": "u"}, "needs 'api_key_env'"),
        (
            {"provider": "acme", "wire": "openai-compatible", "base_url": "u", "api_key_env": [], "quirks": {"x": 1}},
            "unknown quirk",
        ),
        (
            {
                "provider": "acme",
                "wire": "openai-compatible",
                "base_url": "u",
                "api_key_env": [],
                "quirks": {"modes": ["telepathy"]},
            },
            "telepathy",
        ),
    ],
)
def test_a_bad_vendor_entry_is_named(one_more_entry: dict[str, Any], entry: dict[str, Any], problem: str) -> None:
    one_more_entry.update(entry)
    with pytest.raises(rp.ConfigError, match=f"vendor entry 'acme'.*{problem}"):
        _catalog.vendors()


@pytest.mark.parametrize("wire", ["anthropic", "telegraph"])
def test_a_vendor_of_a_wire_that_takes_none_is_named(one_more_entry: dict[str, Any], wire: str) -> None:
    one_more_entry.update({"provider": "acme", "wire": wire, "base_url": "u", "api_key_env": ["K"]})
    with pytest.raises(rp.ConfigError, match=f"speaks wire '{wire}'.*use 'openai-compatible'"):
        rp.model("acme:m", api_key="k")


@pytest.mark.parametrize("vendor", _catalog.vendors(), ids=lambda v: v.provider)
def test_each_shipped_vendor_resolves_to_its_address_and_key(
    vendor: _catalog.Vendor, monkeypatch: pytest.MonkeyPatch
) -> None:
    for var in vendor.base_url_env:
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv(vendor.api_key_env[0], "planted-key")
    with httpx.Client() as client:
        model = rp.model(f"{vendor.provider}:some-model", http_client=client)
    backend: Any = model.backend
    assert backend.base_url == vendor.base_url.rstrip("/") and backend._endpoint.api_key == "planted-key"
    assert "planted-key" not in repr(model)


# ---------------------------------------------------------------- process memory


def test_reset_forgets_the_breakers_and_its_clock_times_them() -> None:
    now = [1000.0]
    rp.reset(clock=lambda: now[0])
    policy = rp.Policy(transport_retries=0, reasks=0, breaker_failures=1, breaker_cooldown=30)
    model = ScriptedModel([rp.ServerError("down", status=500), '{"label":"positive"}', '{"label":"negative"}'])
    with pytest.raises(rp.ServerError):
        classify_task()(Review(text="x"), model=model, policy=policy)
    with pytest.raises(rp.ProviderError, match="circuit open"):
        classify_task()(Review(text="x"), model=model, policy=policy)
    now[0] += 31  # past the cooldown on the injected clock, with no sleep
    assert classify_task()(Review(text="x"), model=model, policy=policy) == Sentiment(label="positive")
    other = ScriptedModel([rp.ServerError("down", status=500), '{"label":"negative"}'])
    with pytest.raises(rp.ServerError):
        classify_task()(Review(text="x"), model=other, policy=policy)
    rp.reset()  # the open circuit is forgotten: the next call goes through at once
    assert classify_task()(Review(text="x"), model=other, policy=policy) == Sentiment(label="negative")


def test_reset_without_a_clock_brings_the_real_one_back() -> None:
    rp.reset(clock=lambda: 1000.0)  # frozen: no cooldown would ever pass on it
    rp.reset()
    policy = rp.Policy(transport_retries=0, reasks=0, breaker_failures=1, breaker_cooldown=0.05)
    model = ScriptedModel([rp.ServerError("down", status=500), '{"label":"positive"}'])
    with pytest.raises(rp.ServerError):
        classify_task()(Review(text="x"), model=model, policy=policy)
    time.sleep(0.1)
    assert classify_task()(Review(text="x"), model=model, policy=policy) == Sentiment(label="positive")


def test_reset_forgets_hooks_and_resolved_names(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustprompt._resolve import resolve

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    kept = resolve("openai:gpt-4.1-nano")
    assert resolve("openai:gpt-4.1-nano") is kept  # a name resolves once: its pools are reused
    seen: list[str] = []

    class Seen(rp.Hook):
        def run_start(self, call: rp.CallInfo) -> None:
            seen.append(call.task.name)

    rp.hooks.add(Seen())
    rp.reset()
    assert resolve("openai:gpt-4.1-nano") is not kept
    classify_task()(Review(text="x"), model=ScriptedModel(['{"label":"positive"}']))
    assert seen == []


def test_reset_forgets_registered_models(monkeypatch: pytest.MonkeyPatch) -> None:
    from robustprompt._resolve import resolve

    monkeypatch.setenv("OPENAI_API_KEY", "k")
    shipped = resolve("openai:gpt-4.1-nano").profile
    rp.register_model(rp.ModelProfile("openai", "gpt-4.1-nano", context_window=1000))
    rp.register_model(rp.ModelProfile("openai", "my-finetune", modes=(rp.OutputMode.JSON_OBJECT,)))
    assert resolve("openai:gpt-4.1-nano").profile.context_window == 1000
    rp.reset()
    assert resolve("openai:gpt-4.1-nano").profile == shipped  # the shipped profile shows again
    assert _catalog.lookup("openai:my-finetune") is None


def test_with_no_suggestion_the_first_sentence_still_ends() -> None:
    with pytest.raises(rp.ConfigError, match=r"^unknown model 'zqxj'\. Models are named 'provider:model'"):
        rp.model("zqxj")
    with pytest.raises(rp.ConfigError, match=r"^unknown provider 'zqxj' in 'zqxj:m'\. Known: "):
        rp.model("zqxj:m")


def test_reset_keeps_an_open_cassettes_routing(server: OpenAIServer, tmp_path: Path) -> None:
    # Dropping the route would send the rest of a recorded (or replayed) test to the network unnoticed.
    path = tmp_path / "c.json"
    with cassette(path, mode="record"):
        rp.reset()
        model = rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key="acme-key")
        server.enqueue(chat_reply('{"label":"positive"}'))
        assert classify_task()(Review(text="x"), model=model) == Sentiment(label="positive")
    assert len(json.loads(path.read_text())["exchanges"]) == 1
