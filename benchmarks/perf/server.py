"""A minimal fake OpenAI Chat Completions server: raw asyncio HTTP/1.1 with keep-alive, stdlib only.

    python server.py [--port 0] [--cpu 0]      # prints "PORT <n>" once listening; stops on SIGTERM / stdin EOF

GET /stats answers {"served": requests, "connections": connections accepted}. Every other request gets a fixed
chat completion (payload.completion): the JSON answer as the message content, or, for a
path under /tool/<name>/, as a forced call of tool <name>. It parses only the request line and the framing
headers, so one core serves tens of thousands of requests a second: the clients, not it, are measured.
It stops by itself after --max-seconds (default 1800) so a crashed orchestrator never leaves it running.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import sys

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import contextlib

from payload import completion

_HEAD_END = b"\r\n\r\n"
_responses: dict[bytes, bytes] = {}
served = 0
connections = 0


def _response_for(path: bytes) -> bytes:
    found = _responses.get(path)
    if found is None:
        tool = None
        if path.startswith(b"/tool/"):
            tool = path.split(b"/")[2].decode()
        body = completion(tool)
        head = (
            b"HTTP/1.1 200 OK\r\ncontent-type: application/json\r\nconnection: keep-alive\r\n"
            b"content-length: " + str(len(body)).encode() + b"\r\n\r\n"
        )
        found = _responses[path] = head + body
    return found


class _Http(asyncio.Protocol):
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        global connections
        connections += 1
        self.transport: asyncio.Transport = transport  # type: ignore[assignment]
        self.buf = bytearray()

    def data_received(self, data: bytes) -> None:
        global served
        buf = self.buf
        buf += data
        while True:
            end = buf.find(_HEAD_END)
            if end < 0:
                return
            head = bytes(buf[:end])
            lower = head.lower()
            body_start = end + 4
            if b"\r\ntransfer-encoding: chunked" in lower:
                last = buf.find(b"\r\n0\r\n\r\n", body_start - 2)
                if last < 0:
                    return
                total = last + 7
            else:
                at = lower.find(b"\r\ncontent-length:")
                length = 0
                if at >= 0:
                    stop = lower.find(b"\r\n", at + 2)
                    length = int(lower[at + 17 : stop if stop >= 0 else None])
                total = body_start + length
                if len(buf) < total:
                    return
            del buf[:total]
            path = head.split(b" ", 2)[1]
            if path.endswith(b"/health"):
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok")
            elif path == b"/stats":
                stats = f'{{"served":{served},"connections":{connections}}}'.encode()
                self.transport.write(b"HTTP/1.1 200 OK\r\ncontent-length: %d\r\n\r\n%s" % (len(stats), stats))
            else:
                self.transport.write(_response_for(path))
                served += 1
            if b"\r\nconnection: close" in lower:
                self.transport.close()
                return


async def _main(port: int, max_seconds: float) -> None:
    loop = asyncio.get_running_loop()
    server = await loop.create_server(_Http, "127.0.0.1", port, backlog=1024, reuse_address=True)
    print(f"PORT {server.sockets[0].getsockname()[1]}", flush=True)
    stop = asyncio.Event()
    loop.add_signal_handler(signal.SIGTERM, stop.set)
    loop.add_signal_handler(signal.SIGINT, stop.set)
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not os.read(sys.stdin.fileno(), 1024) else None)
    with contextlib.suppress(asyncio.TimeoutError):
        await asyncio.wait_for(stop.wait(), max_seconds)
    server.close()
    print(f"SERVED {served}", flush=True)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=0)
    parser.add_argument("--cpu", type=int, default=None, help="pin to this core")
    parser.add_argument("--max-seconds", type=float, default=1800)
    args = parser.parse_args()
    if args.cpu is not None and hasattr(os, "sched_setaffinity"):
        os.sched_setaffinity(0, {args.cpu})
    asyncio.run(_main(args.port, args.max_seconds))


if __name__ == "__main__":
    main()
