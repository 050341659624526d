"""OpenAI Batch (PROVIDERS.md §8): the requests as a JSONL file uploaded with `purpose=batch`, a batch created on it
with `POST /v1/batches {input_file_id, endpoint, completion_window: "24h"}`, polled with `GET /v1/batches/{id}`,
and its output and error files read back, joined to the requests by `custom_id` (their lines are not in input
order).

Each line's `body` is the live call's body as the chat (or Responses) adapter prepares it, so a batch item has the
same output mode, schema and settings as the live call. Limits: 50,000 requests and 200 MB per file. Batch items
cost about half the list price (§8: "About 50% discount").

Ended statuses: `completed`, `expired` and `cancelled` keep the output file of what finished, and the error file
holds the rest (`error.code` `batch_expired` / `batch_cancelled`) or the requests that failed (a `response` with an
error status); `failed` means the input file was refused as a whole (`errors.data`).

Each batch is created with `metadata: {robustprompt_job: mark}`, so a process that stopped between the creation and
keeping its id finds it again in `GET /v1/batches` (newest first, `after` the last id of a page, `limit` up to 100)
instead of creating a second one.
"""

from __future__ import annotations

import json
import secrets
from collections.abc import Mapping, Sequence
from typing import Any, ClassVar
from urllib.parse import urlencode

from robustprompt._errors import ProviderError
from robustprompt.adapters import BatchCandidate, BatchItem, BatchState, Endpoint, Exchange, HttpAnswer, HttpCall
from robustprompt.adapters._common import Headers, answer_error, answer_object

__all__ = ["OpenAIBatchWire", "read_output_line"]

_ENDED = frozenset({"completed", "expired", "cancelled", "failed"})
_ITEM_KINDS = {"batch_expired": "expired", "batch_cancelled": "canceled"}
MARK = "robustprompt_job"  # the metadata key a job's batches carry its mark under
_PAGE = 100  # the list's largest `limit`


class OpenAIBatchWire:
    """The Batch API for requests to `path` (an endpoint the spec's `CreateBatchRequest` allows)."""

    name: ClassVar[str] = "OpenAI Batch"
    max_requests: ClassVar[int] = 50_000
    max_bytes: ClassVar[int] = 200 * 1000 * 1000
    discount: ClassVar[float] = 0.5

    def __init__(self, provider: str, path: str, headers: Headers) -> None:
        self._provider = provider
        self._path = path
        self._headers = headers

    def line(self, custom_id: str, call: HttpCall) -> bytes:
        item = {"custom_id": custom_id, "method": "POST", "url": self._path, "body": call.body}
        return json.dumps(item, ensure_ascii=False, separators=(",", ":")).encode()

    def submit(self, lines: Sequence[bytes], endpoint: Endpoint, mark: str) -> Exchange[str]:
        boundary = secrets.token_hex(16)
        content = _multipart(boundary, b"\n".join(lines) + b"\n")
        headers = {**self._headers(endpoint), "content-type": f"multipart/form-data; boundary={boundary}"}
        answer = yield HttpCall("POST", self.url(endpoint, "files"), headers, None, content)
        file_id = str(self._data(answer, "the batch input file upload").get("id") or "")
        create = {
            "input_file_id": file_id,
            "endpoint": self._path,
            "completion_window": "24h",
            "metadata": {MARK: mark},
        }
        answer = yield HttpCall("POST", self.url(endpoint, "batches"), self._headers(endpoint), create)
        return str(self._data(answer, "the batch's creation").get("id") or "")

    def find(self, mark: str, count: int, since: float, endpoint: Endpoint) -> Exchange[list[BatchCandidate]]:
        """The batches whose metadata carries `mark` (the provider's own record: each is confirmed)."""
        found: list[BatchCandidate] = []
        after: str | None = None
        while True:
            query = {"limit": str(_PAGE), **({"after": after} if after else {})}
            answer = yield HttpCall("GET", self.url(endpoint, "batches", query), self._headers(endpoint), None)
            page = self._data(answer, "the list of batches")
            batches = [b for b in page.get("data") or [] if isinstance(b, dict) and b.get("id")]
            for batch in batches:
                metadata = batch.get("metadata")
                if isinstance(metadata, dict) and metadata.get(MARK) == mark:
                    found.append(BatchCandidate(str(batch["id"]), confirmed=True))
            created = [b["created_at"] for b in batches if isinstance(b.get("created_at"), int)]
            if not batches or not page.get("has_more") or min(created, default=since) < since:
                return found
            after = str(page.get("last_id") or batches[-1]["id"])

    def poll(self, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]:
        answer = yield HttpCall("GET", self.url(endpoint, f"batches/{batch_id}"), self._headers(endpoint), None)
        return self._state(self._data(answer, f"batch {batch_id}"))

    def cancel(self, batch_id: str, endpoint: Endpoint) -> Exchange[BatchState]:
        url = self.url(endpoint, f"batches/{batch_id}/cancel")
        answer = yield HttpCall("POST", url, self._headers(endpoint), None)
        return self._state(self._data(answer, f"cancelling batch {batch_id}"))

    def results(self, state: BatchState, endpoint: Endpoint) -> Exchange[list[BatchItem]]:
        items: list[BatchItem] = []
        for file_id in state.results:
            url = self.url(endpoint, f"files/{file_id}/content")
            answer = yield HttpCall("GET", url, self._headers(endpoint), None)
            if not 200 <= answer.status < 300:
                raise self._error(answer, f"the batch's result file {file_id}")
            items += [read_output_line(raw) for raw in answer.body.splitlines() if raw.strip()]
        return items

    def url(self, endpoint: Endpoint, resource: str, query: Mapping[str, str] | None = None) -> str:
        """The address of one of the API's resources (`files`, `batches/{id}`) at `endpoint`."""
        return f"{endpoint.base_url}/{resource}" + (f"?{urlencode(query)}" if query else "")

    def _state(self, data: Mapping[str, Any]) -> BatchState:
        status = str(data.get("status") or "")
        files = tuple(str(data[key]) for key in ("output_file_id", "error_file_id") if data.get(key))
        counts = data.get("request_counts")
        errors = (data.get("errors") or {}).get("data") if isinstance(data.get("errors"), dict) else None
        reasons = tuple(
            f"{e.get('code')}: {e.get('message')}" + (f" (line {e['line']})" if e.get("line") else "")
            for e in errors or []
            if isinstance(e, dict)
        )
        return BatchState(
            id=str(data.get("id") or ""),
            status=status,
            ended=status in _ENDED,
            counts={k: int(v) for k, v in counts.items() if isinstance(v, int)} if isinstance(counts, dict) else {},
            results=files,
            errors=reasons,
        )

    def _data(self, answer: HttpAnswer, what: str) -> dict[str, Any]:
        return answer_object(answer, what, self._provider, "code")

    def _error(self, answer: HttpAnswer, what: str) -> ProviderError:
        return answer_error(answer, what, self._provider, "code")


def read_output_line(raw: bytes) -> BatchItem:
    """One line of an output or error file: `{id, custom_id, response: {status_code, request_id, body}, error}`.
    A line that cannot be read is `malformed`, under its custom_id when that much is readable."""
    try:
        data = json.loads(raw)
    except (ValueError, RecursionError):
        return BatchItem("", "malformed", message=f"a result line that is not JSON: {raw[:200]!r}")
    if not isinstance(data, dict) or not isinstance(data.get("custom_id"), str):
        return BatchItem("", "malformed", message=f"a result line with no custom_id: {raw[:200]!r}")
    custom_id = data["custom_id"]
    response, error = data.get("response"), data.get("error")
    if isinstance(response, dict) and isinstance(response.get("status_code"), int) and "body" in response:
        body = json.dumps(response["body"]).encode()
        return BatchItem(custom_id, "answered", HttpAnswer(response["status_code"], {}, body))
    if isinstance(error, dict):
        code = str(error.get("code") or "")
        kind: Any = _ITEM_KINDS.get(code, "errored")
        return BatchItem(custom_id, kind, message=str(error.get("message") or code), code=code or None)
    return BatchItem(custom_id, "malformed", message=f"a result line with no response and no error: {raw[:200]!r}")


def _multipart(boundary: str, data: bytes) -> bytes:
    """`CreateFileRequest` as multipart/form-data: `purpose=batch` and the JSONL `file`."""
    mark = f"--{boundary}\r\n".encode()
    return b"".join(
        (
            mark,
            b'Content-Disposition: form-data; name="purpose"\r\n\r\nbatch\r\n',
            mark,
            b'Content-Disposition: form-data; name="file"; filename="batch.jsonl"\r\n',
            b"Content-Type: application/jsonl\r\n\r\n",
            data,
            f"\r\n--{boundary}--\r\n".encode(),
        )
    )
