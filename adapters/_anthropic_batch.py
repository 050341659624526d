"""Anthropic Message Batches (PROVIDERS.md §8): `POST /v1/messages/batches {requests: [{custom_id, params}]}`,
polled with `GET /v1/messages/batches/{id}` until `processing_status` is `ended`, its results read as JSONL from
`results_url`: `{custom_id, result: {type: succeeded | errored | canceled | expired, message | error}}`.

Each request's `params` is the live call's Messages body as the adapter prepares it (the same output mode, schema
and settings). `custom_id` matches `^[a-zA-Z0-9_-]{1,64}$`; at most 100,000 requests or 256 MB per batch; items
cost half the list price (§8: "50% discount"). An `errored` item's error is read as the live call's error of the
same type would be, so it comes out as the same typed error.

A batch keeps no metadata, so a process that stopped between a batch's creation and keeping its id finds it again
in `GET /v1/messages/batches` (newest first, `after_id` the last id of a page, `limit` up to 1,000) by what the
list shows: created since the job began that batch and holding as many requests. An ended one is confirmed (or
ruled out) by its results, whose custom_ids carry the job's mark; one still running stays unconfirmed until then.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from robustprompt._errors import ProviderError
from robustprompt.adapters import BatchCandidate, BatchItem, BatchState, Endpoint, Exchange, HttpAnswer, HttpCall
from robustprompt.adapters._common import Headers, answer_error, answer_object

__all__ = ["AnthropicBatchWire", "read_result_line"]

_KINDS = {"errored": "errored", "canceled": "canceled", "expired": "expired"}
_PAGE = 1000  # the list's largest `limit`


class AnthropicBatchWire:
    name: ClassVar[str] = "Anthropic Message Batches"
    max_requests: ClassVar[int] = 100_000
    max_bytes: ClassVar[int] = 256 * 1000 * 1000
    discount: ClassVar[float] = 0.5

    def __init__(self, provider: str, headers: Headers, error_status: Mapping[str, int]) -> None:
        self._provider = provider
        self._headers = headers
        self._error_status = error_status  # the status a live call gets for each error type

    def line(self, custom_id: str, call: HttpCall) -> bytes:
        item = {"custom_id": custom_id, "params": call.body}
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()

    def submit(self, lines: Sequence[bytes], endpoint: Endpoint, mark: str) -> Exchange[str]:
        content = b'{"requests":[' + b",".join(lines) + b"]}"
        url = f"{endpoint.base_url}/v1/messages/batches"
        answer = yield HttpCall("POST", url, self._headers(endpoint), None, content)
        return str(self._data(answer, "the batch's creation").get("id") or "")

    def find(self, mark: str, count: int, since: float, endpoint: Endpoint) -> Exchange[list[BatchCandidate]]:
        found: list[BatchCandidate] = []
        after: str | None = None
        while True:
            query = urlencode({"limit": _PAGE, **({"after_id": after} if after else {})})
            url = f"{endpoint.base_url}/v1/messages/batches?{query}"
            page = self._data((yield HttpCall("GET", url, self._headers(endpoint), None)), "the list of batches")
            batches = [b for b in page.get("data") or [] if isinstance(b, dict) and b.get("id")]
            recent = [b for b in batches if _created(b) >= since]
            for batch in recent:
                state = _state(batch)
                if sum(state.counts.values()) != count:
                    continue
                if not state.ended:
                    found.append(BatchCandidate(state.id, confirmed=False))
                    continue
                ids = [item.custom_id for item in (yield from self.results(state, endpoint)) if item.custom_id]
                if ids and all(custom_id.startswith(mark) for custom_id in ids):
                    found.append(BatchCandidate(state.id, confirmed=True))
            if len(recent) < len(batches) or not batches or not page.get("has_more"):
                return found
            after = str(page.get("last_id") or batches[-1]["id"])

    def poll(self, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]:
        url = f"{endpoint.base_url}/v1/messages/batches/{batch_id}"
        answer = yield HttpCall("GET", url, self._headers(endpoint), None)
        return _state(self._data(answer, f"batch {batch_id}"))

    def cancel(self, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]:
        url = f"{endpoint.base_url}/v1/messages/batches/{batch_id}/cancel"
        answer = yield HttpCall("POST", url, self._headers(endpoint), None)
        return _state(self._data(answer, f"cancelling batch {batch_id}"))

    def results(self, state: BatchState, endpoint: Endpoint) -> Exchange[list[BatchItem]]:
        items: list[BatchItem] = []
        for url in state.results:
            answer = yield HttpCall("GET", url, self._headers(endpoint), None)
            if not 200 <= answer.status < 300:
                raise self._error(answer, f"the results of batch {state.id}")
            items += [read_result_line(raw, self._error_status) for raw in answer.body.splitlines() if raw.strip()]
        return items

    def _data(self, answer: HttpAnswer, what: str) -> dict[str, Any]:
        return answer_object(answer, what, self._provider, "type")

    def _error(self, answer: HttpAnswer, what: str) -> ProviderError:
        return answer_error(answer, what, self._provider, "type")


def _state(data: Mapping[str, Any]) -> BatchState:
    status = str(data.get("processing_status") or "")
    counts = data.get("request_counts")
    url = data.get("results_url")
    return BatchState(
        id=str(data.get("id") or ""),
        status=status,
        ended=status == "ended",
        counts={k: int(v) for k, v in counts.items() if isinstance(v, int)} if isinstance(counts, dict) else {},
        results=(str(url),) if url else (),
    )


def _created(batch: Mapping[str, Any]) -> float:
    """`created_at` (RFC 3339) in Unix seconds; a batch with none readable counts as new (it is looked at)."""
    try:
        return dt.datetime.fromisoformat(str(batch["created_at"]).replace("Z", "+00:00")).timestamp()
    except (KeyError, ValueError):
        return float("inf")


def read_result_line(raw: bytes, error_status: Mapping[str, int]) -> BatchItem:
    """One results line. A `succeeded` message is the body a live call gets with status 200; an `errored` one's
    error is the body of the live call's error of that type. A line that cannot be read is `malformed`."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return BatchItem("", "malformed", message=f"a result line that is not JSON: {raw[:200]!r}")
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        return BatchItem("", "malformed", message=f"a result line with no custom_id: {raw[:200]!r}")
    custom_id, result = data["custom_id"], data.get("result")
    kind = result.get("type") if isinstance(result, dict) else None
    kind = kind if isinstance(kind, str) else None
    if kind == "succeeded" and isinstance(result, dict) and isinstance(result.get("message"), dict):
        return BatchItem(custom_id, "answered", HttpAnswer(200, {}, json.dumps(result["message"]).encode()))
    if kind == "errored" and isinstance(result, dict) and isinstance(result.get("error"), dict):
        error = result["error"]
        inner = error.get("error") if isinstance(error.get("error"), dict) else error
        status = error_status.get(str(inner.get("type")), 500)
        return BatchItem(custom_id, "answered", HttpAnswer(status, {}, json.dumps(error).encode()))
    if kind in _KINDS:
        message = f"the batch ended before this request ran ({kind})"
        return BatchItem(custom_id, _KINDS[kind], message=message, code=str(kind))  # type: ignore[arg-type]
    return BatchItem(custom_id, "malformed", message=f"a result of unknown type {kind!r}: {raw[:200]!r}")
