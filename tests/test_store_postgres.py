"""The results store on a real PostgreSQL server the tests start (the Debian `postgresql` package), and on SQLite:
the same schema, keys and behaviour; two processes writing at once lose nothing."""

from __future__ import annotations

import glob
import itertools
import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from robustprompt.cli import main
from robustprompt.evals import Store

psycopg = pytest.importorskip("psycopg", reason="psycopg is not installed: pip install 'robustprompt[postgres]'")


def _bin(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    """A throwaway PostgreSQL cluster on a free loopback port; the URL of its maintenance database."""
    initdb, pg_ctl = _bin("initdb"), _bin("pg_ctl")
    if initdb is None or pg_ctl is None:
        pytest.skip("PostgreSQL is not installed (the Debian package `postgresql`)")
    base = Path(tempfile.mkdtemp(prefix="rp-pg-"))
    # PostgreSQL refuses to run as root: the cluster belongs to the postgres account then.
    as_user: list[str] = []
    if os.geteuid() == 0:
        as_user = ["runuser", "-u", "postgres", "--"]
        shutil.chown(base, "postgres", "postgres")
    data, port = base / "data", _free_port()
    run = [*as_user, initdb, "-D", str(data), "-A", "trust", "-U", "rp", "-E", "UTF8", "--no-sync"]
    subprocess.run(run, check=True, capture_output=True, timeout=120)
    options = f"-p {port} -k {base} -c listen_addresses=127.0.0.1 -c fsync=off"
    start = [*as_user, pg_ctl, "-D", str(data), "-l", str(base / "log"), "-o", options, "-w", "start"]
    subprocess.run(start, check=True, capture_output=True, timeout=120)
    try:
        yield f"postgresql://rp@127.0.0.1:{port}/postgres"
    finally:
        subprocess.run([*as_user, pg_ctl, "-D", str(data), "-m", "immediate", "stop"], capture_output=True, timeout=60)
        shutil.rmtree(base, ignore_errors=True)


_serial = itertools.count()


@pytest.fixture
def pg_url(server: str) -> str:
    """A fresh, empty database on the server."""
    name = f"rp_test_{os.getpid()}_{next(_serial)}"
    with psycopg.connect(server, autocommit=True) as db:
        db.execute(f"CREATE DATABASE {name}")
    return server.rsplit("/", 1)[0] + f"/{name}"


@pytest.fixture(params=["sqlite", "postgresql"])
def store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return str(tmp_path / "store.sqlite")
    url: str = request.getfixturevalue("pg_url")
    return url


TASKS = """
from typing import Literal

import robustprompt as rp

task = rp.Task("yes_no", input=int, output=Literal["yes", "no"], instructions="Is the number prime?")
"""


def test_migrate_snapshot_and_drift_on_the_store_given(
    store_url: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    (tmp_path / "tasks.py").write_text(TASKS)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(sys, "path", list(sys.path))
    cases = tmp_path / "cases.jsonl"
    cases.write_text("".join(json.dumps({"id": str(i), "input": i, "expected": "yes"}) + "\n" for i in range(12)))
    rows = [
        {"model": m, "id": str(i), "answer": "[Yes]" if m == "a" or i < 2 else "[No]"} for m in "ab" for i in range(12)
    ]
    (tmp_path / "rec.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rows))
    replay = f"replay:{tmp_path / 'rec.jsonl'}"
    monkeypatch.setenv("ROBUSTPROMPT_STORE", store_url)  # the environment's store, as a CI job sets it
    argv = ["tasks.py:task", "--cases", str(cases)]
    assert main(["migrate", *argv, "--from", f"{replay}#model=a", "--to", f"{replay}#model=b"]) == 1
    assert main(["snapshot", "march", *argv, "--model", f"{replay}#model=a"]) == 0
    assert main(["drift", *argv, "--model", f"{replay}#model=a", "--baseline", "march"]) == 0
    capsys.readouterr()
    with Store(store_url) as store:
        [info] = store.snapshots("march")
        assert (info.model, info.cases) == (f"{replay}#model=a", 12)
        fingerprint = info.fingerprint
        assert len(store.get(fingerprint, f"{replay}#model=b", info.date)) == 12
        assert store.dates(fingerprint, f"{replay}#model=a") == [info.date]


def test_two_processes_writing_at_once_lose_nothing(store_url: str) -> None:
    Store(store_url).close()  # the schema, once: then two writers race on the rows alone
    script = """
import sys
from robustprompt.evals import CaseResult, Store
writer, n = sys.argv[2], int(sys.argv[3])
with Store(sys.argv[1]) as store:
    for i in range(n):
        result = CaseResult(f"{writer}-{i}", "m", True, {"answer": "yes"}, None, None, None, True, 1, 0, "yes",
                            0.1, 1, 1, 0.0, "prompted", "2025-01-01T00:00:00+00:00")
        store.put("t", "fp", [result], date="2025-01-01")  # one transaction each: the most interleaving
"""
    writers = [
        subprocess.Popen([sys.executable, "-c", script, store_url, name, "150"], stderr=subprocess.PIPE, text=True)
        for name in ("left", "right")
    ]
    for writer in writers:
        _, err = writer.communicate(timeout=300)
        assert writer.returncode == 0, err
    with Store(store_url) as store:
        stored = store.get("fp", "m", "2025-01-01")
    assert len(stored) == 300 and {f"left-{i}" for i in range(150)} <= set(stored)


def test_the_schema_is_versioned_the_same_way(pg_url: str) -> None:
    Store(pg_url).close()
    with psycopg.connect(pg_url) as db:
        assert db.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone() == ("3",)
        db.execute("UPDATE meta SET value = '99' WHERE key = 'schema_version'")
    with pytest.raises(Exception, match="has schema version 99, newer than this robustprompt understands"):
        Store(pg_url)


def test_a_password_in_the_url_is_never_shown() -> None:
    from robustprompt import ConfigError

    port = _free_port()  # nothing listens there
    with pytest.raises(ConfigError) as caught:
        Store(f"postgresql://rp:s3cret-pass@127.0.0.1:{port}/db?connect_timeout=2")
    assert "s3cret-pass" not in str(caught.value) and "rp:***@127.0.0.1" in str(caught.value)
