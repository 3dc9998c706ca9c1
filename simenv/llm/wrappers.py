"""Wrappers around any `LLMBackend`: cache, budget, retries, statistics. They implement the same
protocol, so they compose: ``RetryingBackend(BudgetedBackend(CachedBackend(inner, path)))``.

Each wrapper is a `Wrapper`: it has its own `BackendStats` (what passed through that layer) and
``inner``, and hands ``name``, ``model`` and ``chat_prompt`` to ``inner`` explicitly (nothing
else of the inner backend is reachable through it). `layers` walks the chain and `write_stats`
writes every layer's statistics as JSON.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path
from typing import Any, TypeVar

import numpy as np

from simenv.llm.base import BackendStats, LLMBackend, LLMError, derived_stats, retries_said
from simenv.llm.redact import redact

__all__ = [
    "BudgetExceeded",
    "BudgetedBackend",
    "CachedBackend",
    "RetryingBackend",
    "Wrapper",
    "layers",
    "layers_since",
    "layers_total",
    "stats_dict",
    "write_stats",
]


class BudgetExceeded(LLMError):
    """A call would exceed the budget of a `BudgetedBackend`; nothing was sent."""


T = TypeVar("T")


class Wrapper:
    """Base of the wrappers: an `LLMBackend` around ``inner`` with its own ``stats``; name, model
    and chat format are the inner backend's. Subclasses implement `score` and `generate`."""

    inner: LLMBackend
    stats: BackendStats

    @property
    def name(self) -> str:
        return self.inner.name

    @property
    def model(self) -> str:
        return self.inner.model

    def chat_prompt(
        self, system: str | None, user: str, history: Sequence[tuple[str, str]] = ()
    ) -> str:
        return self.inner.chat_prompt(system, user, history)

    def __repr__(self) -> str:
        return f"{type(self).__name__}({self.inner!r})"


def _key(*parts: Any) -> str:
    blob = json.dumps(parts, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return hashlib.sha256(blob.encode()).hexdigest()


class CachedBackend(Wrapper):
    """Disk cache (one sqlite3 file) keyed by backend name, model, call kind, prompt and the
    options / max_tokens / schema. Only the prompts that miss go to ``inner`` (one batched call).
    ``stats.cache_hits`` counts prompts served from disk. Failed calls are not cached."""

    def __init__(self, inner: LLMBackend, path: str | Path) -> None:
        self.inner = inner
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._lock = threading.Lock()
        self._db = sqlite3.connect(self.path, check_same_thread=False, timeout=30)
        with self._db:
            self._db.execute("CREATE TABLE IF NOT EXISTS cache (k TEXT PRIMARY KEY, v TEXT)")
        self.stats = BackendStats()

    def close(self) -> None:
        self._db.close()

    def _get(self, keys: list[str]) -> dict[str, Any]:
        found: dict[str, Any] = {}
        with self._lock:
            for i in range(0, len(keys), 500):
                chunk = keys[i : i + 500]
                marks = ",".join("?" * len(chunk))
                rows = self._db.execute(f"SELECT k, v FROM cache WHERE k IN ({marks})", chunk)
                found.update((k, json.loads(v)) for k, v in rows)
        return found

    def _put(self, items: dict[str, Any]) -> None:
        with self._lock, self._db:
            self._db.executemany(
                "INSERT OR REPLACE INTO cache (k, v) VALUES (?, ?)",
                [(k, json.dumps(v)) for k, v in items.items()],
            )

    def _cached(
        self, kind: str, prompts: Sequence[str], extras: Sequence[Any], call: Callable[..., Any]
    ) -> list[Any]:
        t0 = time.perf_counter()
        keys = [
            _key(self.inner.name, self.inner.model, kind, p, e)
            for p, e in zip(prompts, extras, strict=True)
        ]
        found = self._get(keys)
        miss = [i for i, k in enumerate(keys) if k not in found]
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        self.stats.cache_hits += len(prompts) - len(miss)
        if miss:
            fresh = call(miss)
            new = {keys[i]: v for i, v in zip(miss, fresh, strict=True)}
            self._put(new)
            found.update(new)
        self.stats.seconds += time.perf_counter() - t0
        return [found[k] for k in keys]

    def score(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")

        def call(idx: list[int]) -> list[list[float]]:
            res = self.inner.score([prompts[i] for i in idx], [options[i] for i in idx])
            return [np.asarray(r, dtype=np.float64).tolist() for r in res]

        vals = self._cached("score", prompts, [list(o) for o in options], call)
        return [np.asarray(v, dtype=np.float64) for v in vals]

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]:
        def call(idx: list[int]) -> list[str]:
            return list(self.inner.generate([prompts[i] for i in idx], max_tokens, json_schema))

        extra = [max_tokens, json_schema]
        return [str(t) for t in self._cached("generate", prompts, [extra] * len(prompts), call)]


class BudgetedBackend(Wrapper):
    """Refuses (`BudgetExceeded`) a call that would pass ``max_calls`` calls or
    ``max_prompt_tokens`` prompt tokens (as counted by the innermost backend, so cache hits are
    free), before sending it.
    Prompt tokens of the coming call are estimated as characters / 4 when the inner backend
    cannot count them beforehand."""

    def __init__(
        self,
        inner: LLMBackend,
        max_calls: int | None = None,
        max_prompt_tokens: int | None = None,
        chars_per_token: float = 4.0,
    ) -> None:
        self.inner = inner
        self.max_calls = max_calls
        self.max_prompt_tokens = max_prompt_tokens
        self.chars_per_token = chars_per_token
        self.stats = BackendStats()
        self._tokens = 0

    def _check(self, prompts: Sequence[str]) -> None:
        if self.max_calls is not None and self.stats.calls + 1 > self.max_calls:
            self.stats.extra["refused"] = self.stats.extra.get("refused", 0) + 1
            raise BudgetExceeded(f"call budget of {self.max_calls} calls exhausted")
        if self.max_prompt_tokens is not None:
            est = int(sum(len(p) for p in prompts) / self.chars_per_token)
            if self._tokens + est > self.max_prompt_tokens:
                self.stats.extra["refused"] = self.stats.extra.get("refused", 0) + 1
                raise BudgetExceeded(
                    f"prompt-token budget of {self.max_prompt_tokens} would be exceeded "
                    f"({self._tokens} used, about {est} more)"
                )

    def _run(self, prompts: Sequence[str], fn: Callable[[], T]) -> T:
        self._check(prompts)
        innermost = list(layers(self.inner))[-1]  # cache hits do not reach it
        before = innermost.stats.prompt_tokens
        t0 = time.perf_counter()
        self.stats.calls += 1
        self.stats.prompts += len(prompts)
        try:
            return fn()
        finally:
            used = max(0, innermost.stats.prompt_tokens - before)
            self._tokens += used
            self.stats.prompt_tokens += used
            self.stats.seconds += time.perf_counter() - t0

    def score(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        return self._run(prompts, lambda: self.inner.score(prompts, options))

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]:
        return self._run(prompts, lambda: self.inner.generate(prompts, max_tokens, json_schema))


class RetryingBackend(Wrapper):
    """Retries a failing call (`LLMError`, but never `BudgetExceeded`) up to ``retries`` times
    with exponential backoff (``backoff * 2**attempt`` seconds). After the last failure:
    ``on_error="fail"`` raises an `LLMError` with the last failure's message (redacted,
    `simenv.llm.redact`) and the retries this layer made: ``"<cause> (after 2 retries)"``;
    ``"fallback"`` returns uniform probabilities from `score` and ``fallback_text`` from
    `generate`. ``stats.retries`` / ``stats.failures`` count retries and calls that failed for
    good (``stats.extra["fallbacks"]``: calls answered by fallback). Probabilities that are not
    finite or do not sum to 1 count as failures too."""

    def __init__(
        self,
        inner: LLMBackend,
        retries: int = 2,
        backoff: float = 0.5,
        on_error: str = "fail",
        fallback_text: str = "",
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        if on_error not in ("fail", "fallback"):
            raise ValueError(f"on_error must be 'fail' or 'fallback', got {on_error!r}")
        self.inner = inner
        self.retries = retries
        self.backoff = backoff
        self.on_error = on_error
        self.fallback_text = fallback_text
        self._sleep = sleep
        self.stats = BackendStats()
        self.stats.extra["fallbacks"] = 0

    def _run(self, n: int, fn: Callable[[], T], fallback: Callable[[], T]) -> T:
        t0 = time.perf_counter()
        self.stats.calls += 1
        self.stats.prompts += n
        try:
            for attempt in range(self.retries + 1):
                try:
                    return fn()
                except BudgetExceeded:
                    raise
                except LLMError as e:
                    last = e
                    if attempt < self.retries:
                        self.stats.retries += 1
                        self._sleep(self.backoff * 2**attempt)
            self.stats.failures += 1
            if self.on_error == "fallback":
                self.stats.extra["fallbacks"] += 1
                return fallback()
            raise LLMError(f"{redact(str(last))} ({retries_said(self.retries)})") from last
        finally:
            self.stats.seconds += time.perf_counter() - t0

    def score(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        def call() -> list[np.ndarray]:
            res = self.inner.score(prompts, options)
            for r, opts in zip(res, options, strict=True):
                r = np.asarray(r)
                if r.shape != (len(opts),) or not np.all(np.isfinite(r)) or abs(r.sum() - 1) > 1e-6:
                    raise LLMError(f"{self.inner.name}: unusable probabilities {r!r}")
            return res

        def uniform() -> list[np.ndarray]:
            return [np.full(len(o), 1.0 / len(o)) for o in options]

        return self._run(len(prompts), call, uniform)

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]:
        return self._run(
            len(prompts),
            lambda: self.inner.generate(prompts, max_tokens, json_schema),
            lambda: [self.fallback_text] * len(prompts),
        )


def layers(backend: LLMBackend) -> Iterator[LLMBackend]:
    """The backend and every backend it wraps, outermost first."""
    yield backend
    while isinstance(backend, Wrapper):
        backend = backend.inner
        yield backend


def stats_dict(backend: LLMBackend) -> dict[str, Any]:
    """Statistics of every layer (no prompts, no keys): ``{"layers": [{"layer", "name",
    "model", "stats"}...]}``; the innermost layer's numbers are what the model did."""
    out = [
        {
            "layer": type(layer).__name__,
            "name": str(layer.name),
            "model": str(layer.model),
            "stats": layer.stats.as_dict(),
        }
        for layer in layers(backend)
    ]
    return {"layers": out}


def layers_since(now: list[dict[str, Any]], before: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """What went through each layer between two readings of the same backend's
    ``stats_dict(...)["layers"]``: counters subtracted, `derived_stats` recomputed. A backend serves
    every job of a process, so its own counters run over all of them; a job's share is this."""
    if [x["layer"] for x in now] != [x["layer"] for x in before]:
        raise ValueError("layers_since: the two readings come from different backends")
    return [
        {**layer, "stats": _combined(layer["stats"], old["stats"], -1)}
        for layer, old in zip(now, before, strict=True)
    ]


def layers_total(readings: Sequence[list[dict[str, Any]]]) -> list[dict[str, Any]]:
    """The layers of several jobs' statistics (each a ``layers`` list of one backend chain)
    summed layer by layer, `derived_stats` recomputed; readings of another chain are left out."""
    if not readings:
        return []
    first = readings[0]
    shape = [x["layer"] for x in first]
    total = [{**layer, "stats": dict(layer["stats"])} for layer in first]
    for reading in readings[1:]:
        if [x["layer"] for x in reading] != shape:
            continue
        for layer, more in zip(total, reading, strict=True):
            layer["stats"] = _combined(layer["stats"], more["stats"], +1)
    return total


def _combined(a: dict[str, Any], b: dict[str, Any], sign: int) -> dict[str, Any]:
    """``a + sign * b`` for the numbers (a key missing from ``b`` counts as 0), ``a``'s value
    for anything else; the `derived_stats` are then computed again from the result's
    counters (whatever the subtraction or sum made of them is replaced)."""
    out: dict[str, Any] = {}
    for key, value in a.items():
        other = b.get(key, 0)
        numbers = all(_is_number(v) for v in (value, other))
        out[key] = value + sign * other if numbers else value
    out.update(derived_stats(out))
    return out


def _is_number(value: object) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def write_stats(backend: LLMBackend, path: str | Path) -> Path:
    """Write `stats_dict` as JSON to ``path`` and return the path."""
    p = Path(path)
    p.parent.mkdir(parents=True, exist_ok=True)
    p.write_text(json.dumps(stats_dict(backend), indent=2, default=str) + "\n")
    return p
