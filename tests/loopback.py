"""The fixtures every provider's tests share: a loopback server whose requests are checked once the test is over,
and a model pointed at it. (The httpx `client` fixture is in conftest.py.)

    server = server_fixture(lambda: AnthropicServer(api_key=KEY, check=messages_request_violations))
    make = model_maker("anthropic:claude-sonnet-4-5", api_key=KEY, temperature=0, max_output_tokens=200)

    def test_it(server: AnthropicServer, client: httpx.Client) -> None:
        model = make(server, client)                          # or make(server, client, "anthropic:...", seed=1)
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from typing import Any, TypeVar

import httpx
import pytest

import robustprompt as rp
from robustprompt.testing import LoopbackServer

S = TypeVar("S", bound=LoopbackServer)


def server_fixture(
    start: Callable[[], S], *, after: Callable[[S], None] | None = None, recheck: bool = True, name: str = "server"
) -> Any:
    """A pytest fixture (named `name`) running the server `start` makes for one test. Afterwards every request
    it received passes the server's own `check` (unless `recheck=False`: tests of the server itself send bad
    bodies on purpose), and `after(server)` holds: what else a provider's tests require of every request."""

    def fixture() -> Iterator[S]:
        with start() as server:
            yield server
        if recheck and server.check is not None:
            for received in server.requests:
                assert server.check(received.body) == []
        if after is not None:
            after(server)

    return pytest.fixture(name=name)(fixture)


def model_maker(default: str, *, prefix: str = "", **defaults: Any) -> Callable[..., rp.Model]:
    """`make(server, client, name=default, **options)`: `rp.model(prefix + name)` on the server's address and the
    test's client, with `defaults` (an API key, sampling settings) under the options given."""

    def make(server: LoopbackServer, client: httpx.Client, name: str = default, **options: Any) -> rp.Model:
        settings: dict[str, Any] = {**defaults, **options}
        return rp.model(prefix + name, base_url=server.base_url, http_client=client, **settings)

    return make
