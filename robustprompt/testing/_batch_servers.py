"""Loopback servers for the providers' batch APIs (PROVIDERS.md §8): OpenAI Batch (files, batches, output and error
files) and Anthropic Message Batches, each with its state machine, partial failures, expiry and cancellation.

Each request in a batch is answered by `answer(body) -> Reply` (the live API's reply, e.g. `chat_reply(...)` or
`message_reply(...)`) when the server processes it, so a batch answers exactly as the live endpoint would. The
provider's pace is the test's: `pace` items per poll (default: all at once), `allowance` items in all until the test
raises it (None: no limit; a test holds a batch half done this way), `expire_after` items before the batch expires.
`processed` counts the items answered: what a provider bills.

    with OpenAIBatchServer(answer=lambda body: chat_reply('{"label": "ok"}'), api_key="sk-test") as server:
        job = task.submit(inputs, model=rp.model("openai:gpt-4.1-mini", base_url=server.base_url, api_key=...))
"""

from __future__ import annotations

import json
import random
import re
import threading
import time
import uuid
from collections.abc import Callable, Collection, Iterable, Mapping
from dataclasses import dataclass, field
from typing import Any, ClassVar
from urllib.parse import parse_qs

from robustprompt.testing._anthropic_server import AnthropicWire
from robustprompt.testing._anthropic_server import error_reply as anthropic_error
from robustprompt.testing._azure_server import API_VERSIONS, AzureWire, gateway_refusal, is_deployment_call
from robustprompt.testing._openai_server import OpenAIWire, error_reply
from robustprompt.testing._server import LoopbackServer, Received, Reply, json_reply

__all__ = ["AnthropicBatchServer", "AzureBatchServer", "OpenAIBatchServer"]

Answer = Callable[[Mapping[str, Any]], Reply]
Check = Callable[[Any], list[str]]

_OPENAI_ENDPOINTS = ("/v1/responses", "/v1/chat/completions")
_CUSTOM_ID = re.compile(r"^[a-zA-Z0-9_-]{1,64}$")


@dataclass
class _Item:
    custom_id: str
    body: Any
    problem: str | None = None  # the request is refused as the live endpoint would refuse it
    done: bool = False


@dataclass
class _Batch:
    id: str
    items: list[_Item]
    created_at: int
    status: str
    extra: dict[str, Any] = field(default_factory=dict)
    results: list[tuple[_Item, Reply | None, str]] = field(default_factory=list)  # (item, reply, kind)
    cancel: bool = False

    def pending(self) -> list[_Item]:
        return [item for item in self.items if not item.done]


class _Processor:
    """Answers batch items as the test allows, across every batch of one server."""

    def __init__(self, answer: Answer, pace: int | None, allowance: int | None, expire_after: int | None) -> None:
        self.answer = answer
        self.pace = pace
        self.allowance = allowance
        self.expire_after = expire_after
        self.processed = 0

    def advance(self, batch: _Batch, check: Check | None, refuse: Callable[[str], Reply]) -> None:
        budget = len(batch.items) if self.pace is None else self.pace
        if self.allowance is not None:
            budget = min(budget, self.allowance - self.processed)
        if self.expire_after is not None:
            budget = min(budget, self.expire_after - sum(item.done for item in batch.items))
        for item in batch.pending()[: max(budget, 0)]:
            problems = item.problem or ("; ".join(check(item.body)) if check is not None else "")
            reply = refuse(problems) if problems else self.answer(item.body)
            item.done = True
            self.processed += 1
            batch.results.append((item, reply, "answered"))

    def expired(self, batch: _Batch) -> bool:
        return self.expire_after is not None and sum(i.done for i in batch.items) >= self.expire_after


class _BatchServer(LoopbackServer):
    """What both servers share: the batches, their processing, the results' shuffled order."""

    def __init__(
        self,
        *,
        answer: Answer,
        api_key: str | None = None,
        check: Check | None = None,
        pace: int | None = None,
        allowance: int | None = None,
        expire_after: int | None = None,
        seed: int = 0,
        keep_requests: bool = True,
        corrupt: frozenset[str] = frozenset(),
    ) -> None:
        super().__init__(api_key=api_key)
        self.item_check = check  # applied to each request inside a batch, as the live endpoint checks its body
        self.processor = _Processor(answer, pace, allowance, expire_after)
        self.batches: dict[str, _Batch] = {}
        self.keep_requests = keep_requests
        self.corrupt = corrupt  # custom_ids whose result line is written cut in half
        self.live = 0  # live calls to the same host (a re-ask after the batch)
        self._random = random.Random(seed)
        self._state = threading.Lock()

    @property
    def processed(self) -> int:
        """Items answered so far: what the provider bills."""
        return self.processor.processed

    def allow(self, allowance: int | None) -> None:
        """Let the provider process up to `allowance` items in all (None: every one)."""
        with self._state:
            self.processor.allowance = allowance

    def created(self) -> int:
        return len(self.batches)

    def next_reply(self, received: Received) -> Reply:
        if not self.keep_requests:
            with self._lock:
                self.requests.pop()  # a 100,000-item benchmark must not measure the fake's memory
        with self._state:
            return self.route(received)

    def route(self, received: Received) -> Reply:
        raise NotImplementedError

    def answer_live(self, received: Received, refuse: Callable[[str], Reply]) -> Reply:
        self.live += 1
        problems = self.item_check(received.body) if self.item_check is not None else []
        return refuse("; ".join(problems)) if problems else self.processor.answer(received.body)

    def line(self, custom_id: str, data: Any) -> bytes:
        line = json.dumps(data).encode()
        return line[: len(line) // 2] if custom_id in self.corrupt else line

    def shuffled(self, lines: list[bytes]) -> bytes:
        """Result lines are not in input order (PROVIDERS.md §8): neither are these."""
        self._random.shuffle(lines)
        return b"".join(line + b"\n" for line in lines)


# ------------------------------------------------------------------------------------------------ OpenAI


class _OpenAIBatchPaths(OpenAIWire):
    root: ClassVar[str] = "/v1"  # where the files and batches are

    def live(self, path: str) -> bool:
        return path in _OPENAI_ENDPOINTS

    def serves(self, method: str, path: str) -> bool:
        parts = path.strip("/").split("/")
        if method == "POST":
            return (
                self.live(path)
                or path in (f"{self.root}/files", f"{self.root}/batches")
                or (len(parts) == 4 and parts[1] == "batches" and parts[3] == "cancel")
            )
        return method == "GET" and (
            (len(parts) in (2, 3) and parts[1] == "batches")
            or (len(parts) == 4 and parts[1] == "files" and parts[3] == "content")
        )


class OpenAIBatchServer(_BatchServer):
    """The Batch API: `POST /v1/files` (multipart, purpose=batch), `POST /v1/batches` (with its `metadata`),
    `GET /v1/batches` (newest first, `after` and `limit` paging), `GET /v1/batches/{id}`,
    `POST /v1/batches/{id}/cancel`, `GET /v1/files/{id}/content`. A batch is `validating` when created, then
    `in_progress` (or `failed`, when its file breaks the rules), `finalizing` once every item is answered, then
    `completed`; `expired` after `expire_after` items; `cancelling`, then `cancelled`. `create_check` checks the
    creation body (e.g. against the spec's `CreateBatchRequest`)."""

    wire_factory = _OpenAIBatchPaths
    raw_paths: ClassVar[tuple[str, ...]] = ("/v1/files",)
    root: ClassVar[str] = "/v1"
    max_requests: ClassVar[int] = 50_000
    max_bytes: ClassVar[int] = 200 * 1000 * 1000

    def __init__(self, *, create_check: Check | None = None, **options: Any) -> None:
        super().__init__(**options)
        self.create_check = create_check
        self.files: dict[str, bytes] = {}
        self.uploads = 0

    def route(self, received: Received) -> Reply:
        parts = received.path.strip("/").split("/")
        if isinstance(self.wire, _OpenAIBatchPaths) and self.wire.live(received.path):
            return self.answer_live(received, _openai_refusal)
        if received.method == "POST" and received.path == f"{self.root}/files":
            return self._upload(received)
        if received.method == "POST" and received.path == f"{self.root}/batches":
            return self._create(received.body)
        if received.path == f"{self.root}/batches":
            return self._list(received.query)
        if parts[1] == "files":
            content = self.files.get(parts[2])
            return (
                Reply(200, content, (("content-type", "application/octet-stream"),))
                if content is not None
                else (error_reply(404, f"No such File object: {parts[2]}", type="invalid_request_error"))
            )
        batch = self.batches.get(parts[2])
        if batch is None:
            return error_reply(404, f"No batch found with id '{parts[2]}'.", type="invalid_request_error")
        if received.method == "POST":  # cancel
            if batch.status in ("validating", "in_progress", "finalizing"):
                batch.status, batch.cancel = "cancelling", True
                batch.extra["cancelling_at"] = int(time.time())
            return json_reply(200, self._object(batch))
        self._advance(batch)
        return json_reply(200, self._object(batch))

    def _upload(self, received: Received) -> Reply:
        form = _form(received.headers.get("content-type", ""), received.raw)
        if form.get("purpose") != b"batch":
            return error_reply(400, "purpose must be 'batch' for a batch input file", type="invalid_request_error")
        content = form.get("file")
        if content is None:
            return error_reply(400, "'file' is a required property", type="invalid_request_error", param="file")
        if len(content) > self.max_bytes:
            return error_reply(
                400,
                f"File is too large: {len(content)} bytes, the maximum is {self.max_bytes}",
                type="invalid_request_error",
            )
        file_id = f"file-{uuid.uuid4().hex[:24]}"
        self.files[file_id] = content
        self.uploads += 1
        return json_reply(200, _file(file_id, len(content), "batch.jsonl", "batch"))

    def _list(self, query: str) -> Reply:
        """`GET /v1/batches`: newest first, `limit` (1 to 100, default 20) of them `after` the given id."""
        page = _page(self.batches, query, "after", None, 100)
        if isinstance(page, str):
            return error_reply(400, page, type="invalid_request_error")
        batches, more = page
        for batch in batches:  # a listing sees the batches as a poll of each would: the provider moved on
            self._advance(batch)
        listed: dict[str, Any] = {"object": "list", "data": [self._object(b) for b in batches], "has_more": more}
        if batches:
            listed |= {"first_id": batches[0].id, "last_id": batches[-1].id}
        return json_reply(200, listed)

    def _create(self, body: Any) -> Reply:
        problems = self.create_check(body) if self.create_check is not None else []
        problems += _metadata_problems(body.get("metadata") if isinstance(body, dict) else None)
        if problems:
            return error_reply(400, "; ".join(problems), type="invalid_request_error")
        content = self.files.get(str(body.get("input_file_id")))
        if content is None:
            return error_reply(404, f"No such File object: {body.get('input_file_id')}", type="invalid_request_error")
        batch_id = f"batch_{uuid.uuid4().hex[:24]}"
        batch = _Batch(
            batch_id,
            [],
            int(time.time()),
            "validating",
            {"endpoint": body["endpoint"], "input_file_id": body["input_file_id"], "metadata": body.get("metadata")},
        )
        batch.extra["errors"] = _openai_lines(batch, content, body["endpoint"], self.max_requests, self.line_error)
        self.batches[batch_id] = batch
        return json_reply(200, self._object(batch))

    def line_error(self, body: Any, number: int) -> dict[str, Any] | None:
        """What fails the batch in line `number`'s request body, beside the rules every line follows."""
        return None

    def _advance(self, batch: _Batch) -> None:
        if batch.status == "validating":
            batch.status = "failed" if batch.extra["errors"] else "in_progress"
            batch.extra["failed_at" if batch.extra["errors"] else "in_progress_at"] = int(time.time())
            return
        if batch.status == "finalizing":
            self._finish(batch, "completed")
        elif batch.status == "cancelling":
            self._finish(batch, "cancelled")
        elif batch.status == "in_progress":
            self.processor.advance(batch, self.item_check, _openai_refusal)
            if not batch.pending():
                batch.status = "finalizing"
                batch.extra["finalizing_at"] = int(time.time())
            elif self.processor.expired(batch):
                self._finish(batch, "expired")

    def _finish(self, batch: _Batch, status: str) -> None:
        """Write the output file (answered with 2xx) and the error file (the rest, and what never ran)."""
        output: list[bytes] = []
        errors: list[bytes] = []
        for item, reply, _ in batch.results:
            assert reply is not None
            line = {
                "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                "custom_id": item.custom_id,
                "response": {
                    "status_code": reply.status,
                    "request_id": uuid.uuid4().hex,
                    "body": json.loads(reply.body),
                },
                "error": None,
            }
            (output if 200 <= reply.status < 300 else errors).append(self.line(item.custom_id, line))
        code = {"expired": "batch_expired", "cancelled": "batch_cancelled"}.get(status)
        for item in batch.pending() if code else []:
            message = (
                "This request could not be executed before the completion window expired."
                if code == "batch_expired"
                else "This request was not executed because the batch was cancelled."
            )
            line = {
                "id": f"batch_req_{uuid.uuid4().hex[:24]}",
                "custom_id": item.custom_id,
                "response": None,
                "error": {"code": code, "message": message},
            }
            errors.append(self.line(item.custom_id, line))
        for key, lines in (("output_file_id", output), ("error_file_id", errors)):
            if lines:
                file_id = f"file-{uuid.uuid4().hex[:24]}"
                self.files[file_id] = self.shuffled(lines)
                batch.extra[key] = file_id
        batch.status = status
        batch.extra[f"{status}_at"] = int(time.time())

    def _object(self, batch: _Batch) -> dict[str, Any]:
        """The spec's `Batch` object."""
        failed = sum(1 for _, reply, _ in batch.results if reply is not None and not 200 <= reply.status < 300)
        if batch.status in ("expired", "cancelled"):
            failed += len(batch.pending())
        stamps = (
            "in_progress_at",
            "finalizing_at",
            "completed_at",
            "failed_at",
            "expired_at",
            "cancelling_at",
            "cancelled_at",
        )
        errors = batch.extra["errors"]
        return {
            "id": batch.id,
            "object": "batch",
            "endpoint": batch.extra["endpoint"],
            "errors": {"object": "list", "data": errors} if errors else None,
            "input_file_id": batch.extra["input_file_id"],
            "completion_window": "24h",
            "status": batch.status,
            "output_file_id": batch.extra.get("output_file_id"),
            "error_file_id": batch.extra.get("error_file_id"),
            "created_at": batch.created_at,
            "expires_at": batch.created_at + 24 * 3600,
            **{stamp: batch.extra.get(stamp) for stamp in stamps},
            "request_counts": {
                "total": len(batch.items),
                "completed": len(batch.results)
                - failed
                + (len(batch.pending()) if batch.status in ("expired", "cancelled") else 0),
                "failed": failed,
            },
            "metadata": batch.extra["metadata"],
        }


def _page(
    batches: Mapping[str, _Batch], query: str, after_key: str, before_key: str | None, most: int
) -> tuple[list[_Batch], bool] | str:
    """One page of a list of batches, newest first: (its batches, whether more follow), or what is wrong with the
    query. `after_key` names the cursor that pages back to older batches, `before_key` the one to newer ones."""
    asked = {name: values[-1] for name, values in parse_qs(query).items()}
    newest = list(batches.values())[::-1]
    try:
        limit = int(asked.get("limit", "20"))
    except ValueError:
        return f"limit: {asked['limit']!r} is not an integer"
    if not 1 <= limit <= most:
        return f"limit: must be between 1 and {most}, got {limit}"
    ids = [batch.id for batch in newest]
    if after_key in asked:
        if asked[after_key] not in ids:
            return f"{after_key}: no batch with id {asked[after_key]!r}"
        older = newest[ids.index(asked[after_key]) + 1 :]
        return older[:limit], len(older) > limit
    if before_key is not None and before_key in asked:
        if asked[before_key] not in ids:
            return f"{before_key}: no batch with id {asked[before_key]!r}"
        newer = newest[: ids.index(asked[before_key])]
        return newer[-limit:], len(newer) > limit
    return newest[:limit], len(newest) > limit


def _metadata_problems(metadata: Any) -> list[str]:
    """The spec's `Metadata`: at most 16 pairs of strings, keys up to 64 characters, values up to 512."""
    if metadata is None:
        return []
    if not isinstance(metadata, dict) or len(metadata) > 16:
        return ["metadata: an object of at most 16 key-value pairs"]
    return [
        f"metadata: {key!r} must be a string of at most 64 characters with a string value of at most 512"
        for key, value in metadata.items()
        if len(key) > 64 or not isinstance(value, str) or len(value) > 512
    ]


def _openai_lines(
    batch: _Batch,
    content: bytes,
    endpoint: str,
    max_requests: int,
    line_error: Callable[[Any, int], dict[str, Any] | None],
) -> list[dict[str, Any]]:
    """Read the input file into `batch.items`; the problems that fail the whole batch, as `errors.data`."""
    errors: list[dict[str, Any]] = []
    seen: set[str] = set()
    for number, raw in enumerate(content.splitlines(), start=1):
        if not raw.strip():
            continue
        try:
            line = json.loads(raw)
        except ValueError:
            errors.append(_line_error("invalid_json_line", "This line is not parseable as valid JSON.", None, number))
            continue
        custom_id = line.get("custom_id") if isinstance(line, dict) else None
        if not isinstance(custom_id, str) or custom_id in seen:
            code = "duplicate_custom_id" if custom_id in seen else "missing_required_parameter"
            errors.append(_line_error(code, "custom_id must be a unique string within the batch", "custom_id", number))
            continue
        if line.get("method") != "POST" or line.get("url") != endpoint:
            message = f"The line's url must be the batch's endpoint {endpoint} (POST)"
            errors.append(_line_error("mismatched_endpoint", message, "url", number))
            continue
        problem = line_error(line.get("body"), number)
        if problem is not None:
            errors.append(problem)
            continue
        seen.add(custom_id)
        batch.items.append(_Item(custom_id, line.get("body")))
    if len(batch.items) > max_requests:
        message = f"The batch input file holds {len(batch.items)} requests; the limit is {max_requests}."
        errors.append(_line_error("too_many_requests", message, None, None))
    return errors


def _line_error(code: str, message: str, param: str | None, line: int | None) -> dict[str, Any]:
    """The spec's `BatchError`."""
    return {"code": code, "message": message, "param": param, "line": line}


def _openai_refusal(problems: str) -> Reply:
    return error_reply(400, problems, type="invalid_request_error")


def _file(file_id: str, size: int, name: str, purpose: str) -> dict[str, Any]:
    return {
        "id": file_id,
        "object": "file",
        "bytes": size,
        "created_at": int(time.time()),
        "filename": name,
        "purpose": purpose,
        "status": "processed",
        "expires_at": None,
        "status_details": None,
    }


def _form(content_type: str, raw: bytes) -> dict[str, bytes]:
    """The fields of a multipart/form-data body (RFC 7578), by name."""
    boundary = re.search(r'boundary="?([^";]+)"?', content_type)
    if boundary is None:
        return {}
    fields: dict[str, bytes] = {}
    for chunk in raw.split(b"--" + boundary.group(1).encode())[1:]:
        if chunk.startswith(b"--"):  # the closing delimiter
            break
        head, blank, body = chunk.partition(b"\r\n\r\n")
        name = re.search(rb'; name="([^"]*)"', head)
        if blank and name is not None:
            fields[name.group(1).decode()] = body.removesuffix(b"\r\n")
    return fields


class _AzureBatchPaths(_OpenAIBatchPaths, AzureWire):
    root: ClassVar[str] = "/openai"

    def live(self, path: str) -> bool:
        return is_deployment_call(path)


class AzureBatchServer(OpenAIBatchServer):
    """Azure OpenAI's global batch: OpenAI's Batch API at `/openai/files` and `/openai/batches`, every request
    with an `api-version` the resource knows and the `api-key` header; the lines' `url` is `/chat/completions`
    and each body's `model` a deployment (`deployments`, None: any name), else the batch fails validation
    (`model_not_found`). Re-asks go to the deployment's live path. Up to 100,000 requests per file."""

    wire_factory = _AzureBatchPaths
    raw_paths: ClassVar[tuple[str, ...]] = ("/openai/files",)
    root: ClassVar[str] = "/openai"
    max_requests: ClassVar[int] = 100_000

    def __init__(
        self, *, deployments: Iterable[str] | None = None, api_versions: Collection[str] = API_VERSIONS, **options: Any
    ) -> None:
        super().__init__(**options)
        self.deployments = None if deployments is None else frozenset(deployments)
        self.api_versions = api_versions

    def next_reply(self, received: Received) -> Reply:
        return gateway_refusal(received, self.api_versions, self.deployments) or super().next_reply(received)

    def line_error(self, body: Any, number: int) -> dict[str, Any] | None:
        model = body.get("model") if isinstance(body, dict) else None
        if self.deployments is None or model in self.deployments:
            return None
        message = f"The model deployment {model!r} in the input file was not found: name a global batch deployment"
        return _line_error("model_not_found", message, "model", number)


# --------------------------------------------------------------------------------------------- Anthropic


class _AnthropicBatchPaths(AnthropicWire):
    def serves(self, method: str, path: str) -> bool:
        parts = path.strip("/").split("/")
        if method == "POST" and path == "/v1/messages":
            return True
        if parts[:3] != ["v1", "messages", "batches"]:
            return False
        if method == "POST":
            return len(parts) == 3 or (len(parts) == 5 and parts[4] == "cancel")
        return method == "GET" and (len(parts) in (3, 4) or (len(parts) == 5 and parts[4] == "results"))


class AnthropicBatchServer(_BatchServer):
    """Message Batches: `POST /v1/messages/batches {requests}`, `GET /v1/messages/batches` (newest first,
    `after_id` / `before_id` and `limit` paging), `GET .../{id}` (`processing_status`
    `in_progress` → `ended`, or `canceling` → `ended`), `POST .../{id}/cancel`, `GET .../{id}/results` (JSONL,
    once ended): `succeeded` with the message, `errored` with the error a live call would get, `canceled`,
    `expired`."""

    wire_factory = _AnthropicBatchPaths
    max_requests: ClassVar[int] = 100_000
    max_bytes: ClassVar[int] = 256 * 1000 * 1000

    def route(self, received: Received) -> Reply:
        parts = received.path.strip("/").split("/")
        if received.path == "/v1/messages":
            return self.answer_live(received, _anthropic_refusal)
        if received.method == "POST" and len(parts) == 3:
            return self._create(received)
        if len(parts) == 3:
            return self._list(received.query)
        batch = self.batches.get(parts[3])
        if batch is None:
            return anthropic_error(404, "not_found_error", f"No batch found with id {parts[3]}")
        if received.method == "POST":
            if batch.status == "in_progress":
                batch.status, batch.cancel = "canceling", True
                batch.extra["cancel_initiated_at"] = _stamp()
            return json_reply(200, self._object(batch))
        if len(parts) == 5:
            if batch.status != "ended":
                return anthropic_error(
                    404, "not_found_error", f"Batch {batch.id} has not ended: its results are not ready"
                )
            return Reply(200, self._results(batch), (("content-type", "application/binary"),))
        self._advance(batch)
        return json_reply(200, self._object(batch))

    def _list(self, query: str) -> Reply:
        """`GET /v1/messages/batches`: newest first, `limit` (1 to 1,000, default 20) of them `after_id` or
        `before_id` the given one."""
        page = _page(self.batches, query, "after_id", "before_id", 1000)
        if isinstance(page, str):
            return anthropic_error(400, "invalid_request_error", page)
        batches, more = page
        for batch in batches:  # a listing sees the batches as a poll of each would: the provider moved on
            self._advance(batch)
        return json_reply(
            200,
            {
                "data": [self._object(b) for b in batches],
                "has_more": more,
                "first_id": batches[0].id if batches else None,
                "last_id": batches[-1].id if batches else None,
            },
        )

    def _create(self, received: Received) -> Reply:
        if len(received.raw) > self.max_bytes:
            return anthropic_error(
                413, "request_too_large", f"Request exceeds the maximum size of {self.max_bytes} bytes"
            )
        requests = received.body.get("requests") if isinstance(received.body, dict) else None
        if not isinstance(requests, list) or not requests:
            return anthropic_error(400, "invalid_request_error", "requests: Field required (a non-empty list)")
        if len(requests) > self.max_requests:
            return anthropic_error(
                400, "invalid_request_error", f"requests: at most {self.max_requests} requests per batch"
            )
        items: list[_Item] = []
        seen: set[str] = set()
        for index, request in enumerate(requests):
            custom_id = request.get("custom_id") if isinstance(request, dict) else None
            if not isinstance(custom_id, str) or not _CUSTOM_ID.match(custom_id):
                return anthropic_error(
                    400, "invalid_request_error", f"requests.{index}.custom_id: must match ^[a-zA-Z0-9_-]{{1,64}}$"
                )
            if custom_id in seen:
                return anthropic_error(
                    400, "invalid_request_error", f"requests.{index}.custom_id: duplicate custom_id {custom_id!r}"
                )
            seen.add(custom_id)
            params = request.get("params")
            problem = (
                "max_tokens: 0 is not allowed in a batch"
                if isinstance(params, dict) and params.get("max_tokens") == 0
                else None
            )
            items.append(_Item(custom_id, params, problem))
        batch_id = f"msgbatch_{uuid.uuid4().hex[:24]}"
        batch = _Batch(batch_id, items, int(time.time()), "in_progress")
        self.batches[batch_id] = batch
        return json_reply(200, self._object(batch))

    def _advance(self, batch: _Batch) -> None:
        if batch.status == "canceling":
            self._end(batch, "canceled")
        elif batch.status == "in_progress":
            self.processor.advance(batch, self.item_check, _anthropic_refusal)
            if not batch.pending():
                self._end(batch, None)
            elif self.processor.expired(batch):
                self._end(batch, "expired")

    def _end(self, batch: _Batch, rest: str | None) -> None:
        for item in batch.pending() if rest else []:
            batch.results.append((item, None, rest or ""))
            item.done = True
        batch.status = "ended"
        batch.extra["ended_at"] = _stamp()
        batch.extra["results_url"] = f"{self.base_url}/v1/messages/batches/{batch.id}/results"

    def _results(self, batch: _Batch) -> bytes:
        lines: list[bytes] = []
        for item, reply, kind in batch.results:
            result: dict[str, Any]
            if reply is None:
                result = {"type": kind}
            elif 200 <= reply.status < 300:
                result = {"type": "succeeded", "message": json.loads(reply.body)}
            else:
                error = json.loads(reply.body)
                result = {"type": "errored", "error": {"type": "error", "error": error.get("error", error)}}
            lines.append(self.line(item.custom_id, {"custom_id": item.custom_id, "result": result}))
        return self.shuffled(lines)

    def _object(self, batch: _Batch) -> dict[str, Any]:
        counts = {"processing": 0, "succeeded": 0, "errored": 0, "canceled": 0, "expired": 0}
        for _, reply, kind in batch.results:
            name = kind if reply is None else ("succeeded" if 200 <= reply.status < 300 else "errored")
            counts[name] += 1
        counts["processing"] = len(batch.pending())
        return {
            "id": batch.id,
            "type": "message_batch",
            "processing_status": batch.status,
            "request_counts": counts,
            "ended_at": batch.extra.get("ended_at"),
            "created_at": _stamp(batch.created_at),
            "expires_at": _stamp(batch.created_at + 24 * 3600),
            "cancel_initiated_at": batch.extra.get("cancel_initiated_at"),
            "archived_at": None,
            "results_url": batch.extra.get("results_url"),
        }


def _anthropic_refusal(problems: str) -> Reply:
    return anthropic_error(400, "invalid_request_error", problems)


def _stamp(seconds: float | None = None) -> str:
    """RFC 3339, as the API writes its timestamps."""
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(time.time() if seconds is None else seconds))
