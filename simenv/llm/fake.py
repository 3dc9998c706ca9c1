"""`FakeBackend`: a deterministic test double for the LLM protocol. Not a model.

Use it to test agents, wrappers and failure paths without loading weights:

- ``score``: every label gets a weight from a stable hash of (seed, prompt, label) in [0.5, 1.5);
  labels whose *option text* contains one of ``keywords`` are boosted by ``keyword_boost``. An
  option text is the prompt line that starts with the label (``"2. Alien"``, ``"2) Alien"`` or
  ``"2: Alien"``), so "prefers the item whose text mentions sci-fi" is scriptable. With
  ``hashed=False`` the hash part is left out (every label starts at 1), and ``label_bias``
  multiplies the weight of the labels it names in every answer: a model that prefers some labels
  whatever the question (what contextual calibration must remove; `agents.label_calibration`).
- ``chat_prompt``: ChatML (`simenv.llm.chat.chatml`).
- ``generate``: ``"[fake] <hash>"`` texts, or (with ``json_schema``) a JSON object holding every
  required key (strings ``"fake"``, integers 3, numbers 0.5, booleans false, arrays []).
- failure injection: ``fail_first=N`` raises `LLMError` on the first N calls; ``fail_every=K``
  on every K-th call; ``garbage=True`` returns unusable output (NaN probabilities, non-JSON text).
"""

from __future__ import annotations

import hashlib
import json
import re
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from simenv.llm.base import BackendStats, LLMError, check_labels
from simenv.llm.chat import chatml


def _unit(*parts: str) -> float:
    """A stable number in [0, 1) from strings (no global random state)."""
    h = hashlib.blake2b("\x1f".join(parts).encode(), digest_size=8).digest()
    return int.from_bytes(h, "big") / 2.0**64


class FakeBackend:
    """Deterministic test double implementing `LLMBackend` (see the module docstring)."""

    name = "fake"

    def __init__(
        self,
        model: str = "fake-1",
        seed: int = 0,
        keywords: Sequence[str] = (),
        keyword_boost: float = 20.0,
        fail_first: int = 0,
        fail_every: int = 0,
        garbage: bool = False,
        latency: float = 0.0,
        hashed: bool = True,
        label_bias: Mapping[str, float] | None = None,
    ) -> None:
        self.model = model
        self.seed = seed
        self.keywords = [k.lower() for k in keywords]
        self.keyword_boost = keyword_boost
        self.fail_first = fail_first
        self.fail_every = fail_every
        self.garbage = garbage
        self.latency = latency
        self.hashed = hashed
        self.label_bias = dict(label_bias or {})
        self.attempts = 0  # calls attempted, including injected failures
        self.stats = BackendStats()

    def __repr__(self) -> str:
        return f"FakeBackend(model={self.model!r}, seed={self.seed})"

    def _maybe_fail(self) -> None:
        self.attempts += 1
        if self.latency:
            import time

            time.sleep(self.latency)
        if self.attempts <= self.fail_first or (
            self.fail_every and self.attempts % self.fail_every == 0
        ):
            self.stats.failures += 1
            raise LLMError(f"fake backend: injected failure on call {self.attempts}")

    def _count(self, prompts: Sequence[str], completion_tokens: int = 0) -> None:
        self.stats.add_call(
            len(prompts),
            prompt_tokens=sum(len(p.split()) + 1 for p in prompts),
            completion_tokens=completion_tokens,
        )

    def chat_prompt(
        self, system: str | None, user: str, history: Sequence[tuple[str, str]] = ()
    ) -> str:
        return chatml(system, user, history)

    def option_text(self, prompt: str, label: str) -> str:
        m = re.search(rf"^\s*{re.escape(label)}\s*[.):]\s*(.*)$", prompt, flags=re.MULTILINE)
        return m.group(1) if m else ""

    def score(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        for opts in options:
            check_labels(opts)
        self._maybe_fail()
        self._count(prompts)
        out = []
        for prompt, opts in zip(prompts, options, strict=True):
            if self.garbage:
                out.append(np.full(len(opts), np.nan))
                continue
            if self.hashed:
                w = np.array([0.5 + _unit(str(self.seed), prompt, lab) for lab in opts])
            else:
                w = np.ones(len(opts))
            if self.label_bias:
                w *= np.array([self.label_bias.get(lab, 1.0) for lab in opts])
            if self.keywords:
                for j, lab in enumerate(opts):
                    text = self.option_text(prompt, lab).lower()
                    if any(k in text for k in self.keywords):
                        w[j] *= self.keyword_boost
            out.append(w / w.sum())
        return out

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]:
        self._maybe_fail()
        texts = []
        for p in prompts:
            tag = f"{_unit(str(self.seed), p):.6f}"[2:]
            if self.garbage:
                texts.append("<<garbage " + tag)
            elif json_schema is not None:
                texts.append(json.dumps(_fill(json_schema)))
            else:
                texts.append(" ".join(["[fake]", tag][: max(1, max_tokens)]))
        self._count(prompts, sum(len(t.split()) for t in texts))
        if json_schema is not None and self.garbage:
            raise LLMError("fake backend: garbage instead of JSON")
        return texts


def _fill(schema: dict[str, Any]) -> dict[str, Any]:
    defaults = {"string": "fake", "integer": 3, "number": 0.5, "boolean": False, "array": []}
    props = schema.get("properties", {})
    obj: dict[str, Any] = {}
    for key in schema.get("required", list(props)):
        typ = props.get(key, {}).get("type", "string")
        obj[key] = _fill(props[key]) if typ == "object" else defaults.get(typ, "fake")
    return obj
