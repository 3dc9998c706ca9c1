"""The one interface between recloop and language models.

Agents never build clients: the world injects one `LLMBackend`, and deciders, reflection and
interviews gather the requests of all agents into one call per tick and phase.

- ``score(prompts, options)``: one forward pass per prompt, no decoding, no parsing. For prompt
  i it returns the probabilities of the option labels ``options[i]`` (e.g. ``["1", "2", "3",
  "none"]``) as the model's next token, renormalised over those labels. Each label's first token
  must differ from the others' (`check_labels`).
- ``generate(prompts, max_tokens, json_schema=None)``: decoded texts (reflections, interviews);
  greedy, so deterministic for a given backend and model.
- ``chat_prompt(system, user, history=())``: the prompt text for one chat turn in the model's
  own chat format, ending with the assistant turn's opening; ``history`` holds earlier (user,
  assistant) turns, oldest first, so a follow-up question continues the prompt it follows
  (`simenv.llm.chat`). Callers put the stable text (persona) in ``system`` so prompts share a
  prefix.
- ``name``, ``model``, ``stats``: the backend kind, the model it runs and its `BackendStats`.

Backends (`simenv.llm.transformers_backend`, `.vllm_backend`, `.openai_backend`, `.fake`) and
the wrappers around them (`simenv.llm.wrappers`) all implement `LLMBackend`; chat formats
shared by several backends are in `simenv.llm.chat`.

Caching, retries, time-outs, budgets and statistics are wrappers around any backend
(`simenv.llm.wrappers`), never code inside agents.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Protocol, runtime_checkable

import numpy as np


class LLMError(RuntimeError):
    """A backend call that failed (server down, time-out, unusable answer)."""


def retries_said(n: int) -> str:
    """``"after 1 retry"``, ``"after 2 retries"``: how failure messages count the retries that
    were made."""
    return f"after {n} {'retry' if n == 1 else 'retries'}"


@dataclass
class BackendStats:
    """What went through one backend or wrapper layer (written to ``llm_stats.json``).

    The fields are counters; ``extra`` holds a layer's own counters and facts (load seconds,
    fallbacks...). Rates are never stored: `derived_stats` computes them from the counters
    whenever the statistics are written or combined."""

    calls: int = 0
    prompts: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cached_prompt_tokens: int = 0
    cache_hits: int = 0
    failures: int = 0
    retries: int = 0
    seconds: float = 0.0
    extra: dict[str, Any] = field(default_factory=dict)

    def add_call(
        self,
        prompts: int,
        *,
        prompt_tokens: int = 0,
        completion_tokens: int = 0,
        cached_prompt_tokens: int = 0,
        seconds: float = 0.0,
    ) -> None:
        """Count one call of ``prompts`` prompts and what it used."""
        self.calls += 1
        self.prompts += prompts
        self.prompt_tokens += prompt_tokens
        self.completion_tokens += completion_tokens
        self.cached_prompt_tokens += cached_prompt_tokens
        self.seconds += seconds

    def as_dict(self) -> dict[str, Any]:
        """The counters, ``extra`` and the `derived_stats` of the counters, as one dict."""
        d = {k: v for k, v in self.__dict__.items() if k != "extra"}
        d.update(self.extra)
        d.update(derived_stats(d))
        return d


def derived_stats(counters: Mapping[str, Any]) -> dict[str, Any]:
    """The statistics computed from a layer's counters (one `BackendStats.as_dict` or a
    difference or sum of several): ``prefix_cache_hit_rate``, the share of the prompt tokens
    the backend served from its prefix cache (``cached_prompt_tokens / prompt_tokens``, 0.0
    for a layer that counts no prompt tokens, e.g. the cache wrapper)."""
    prompt = counters.get("prompt_tokens", 0)
    cached = counters.get("cached_prompt_tokens", 0)
    return {"prefix_cache_hit_rate": round(cached / prompt, 4) if prompt else 0.0}


@runtime_checkable
class LLMBackend(Protocol):
    """A language model as recloop uses it: every backend and every wrapper implements this
    (see the module docstring). ``name``, ``model`` and ``stats`` are read-only here, so plain
    attributes and properties (a wrapper's ``name`` is its inner backend's) both qualify."""

    @property
    def name(self) -> str: ...

    @property
    def model(self) -> str: ...

    @property
    def stats(self) -> BackendStats: ...

    def chat_prompt(
        self, system: str | None, user: str, history: Sequence[tuple[str, str]] = ()
    ) -> str: ...

    def score(
        self, prompts: Sequence[str], options: Sequence[Sequence[str]]
    ) -> list[np.ndarray]: ...

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]: ...


def check_labels(labels: Sequence[str], first_tokens: Sequence[Any] | None = None) -> None:
    """Validate the option labels of one prompt; raise `ValueError` when they are unusable.

    Labels must be non-empty, distinct strings. When a backend passes ``first_tokens`` (the
    token each label would start with as the model's next token after the prompt), those must be
    distinct too: scoring reads one next-token distribution, so two labels sharing their first
    token could not be told apart.
    """
    if len(labels) == 0:
        raise ValueError("no option labels given")
    for lab in labels:
        if not isinstance(lab, str) or not lab.strip():
            raise ValueError(f"option labels must be non-empty strings, got {lab!r}")
    if len(set(labels)) != len(labels):
        raise ValueError(f"duplicate option labels in {list(labels)!r}")
    if first_tokens is not None:
        if len(first_tokens) != len(labels):
            raise ValueError("first_tokens must have one entry per label")
        seen: dict[Any, str] = {}
        for lab, tok in zip(labels, first_tokens, strict=True):
            if tok in seen:
                raise ValueError(
                    f"option labels {seen[tok]!r} and {lab!r} start with the same token "
                    f"{tok!r} after this prompt, so one next-token distribution cannot tell "
                    "them apart; use labels with distinct first tokens (e.g. '1'..'9', 'none') "
                    "or end the prompt with a space or newline"
                )
            seen[tok] = lab


def check_json(text: str, schema: dict[str, Any] | None) -> dict[str, Any]:
    """Parse ``text`` as a JSON object and check the schema's ``required`` keys (best effort).

    Leading/trailing prose and Markdown code fences around the object are tolerated. Raises
    `LLMError` when no object parses or a required key is missing.
    """
    import json

    start = text.find("{")
    if start < 0:
        raise LLMError(f"expected a JSON object, got {text[:80]!r}")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text, start)
    except json.JSONDecodeError as e:
        raise LLMError(f"invalid JSON ({e.msg}) in {text[:80]!r}") from None
    if not isinstance(obj, dict):
        raise LLMError(f"expected a JSON object, got {type(obj).__name__}")
    missing = [k for k in (schema or {}).get("required", []) if k not in obj]
    if missing:
        raise LLMError(f"JSON answer lacks required keys {missing}")
    return obj


def normalise(values: np.ndarray) -> np.ndarray:
    """Renormalise non-negative weights to probabilities (uniform if they sum to 0)."""
    v = np.asarray(values, dtype=np.float64)
    total = float(v.sum())
    if not np.isfinite(total) or total <= 0:
        return np.full(len(v), 1.0 / len(v))
    return v / total
