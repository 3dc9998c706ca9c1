"""Contextual calibration of LLM answers (Zhao et al. 2021, "Calibrate Before Use").

A language model asked to pick an option label prefers some labels whatever the question: the
embedded SmolLM2-135M answers ``none`` with probability ~0.002 and so clicks on every slate.
Contextual calibration estimates that preference and divides it out:

1. **Estimate.** For each question kind (`agents.prompts.QUESTION_KINDS`), label set and
   context, the model answers *content-free* variants of the prompt: the same persona (the
   system part) and the same template, with every item text replaced by a placeholder of
   `agents.prompts.CONTENT_FREE` (``"N/A"``, ``""``, ``"[MASK]"``), no memories, the neutral
   emotion and day 0 (`agents.prompts.content_free_question`; the rating and stay/leave variants
   continue the answer to a content-free choice prompt of the same slate size, as the
   decisions' follow-ups continue the answer to the choice prompt: the stars after ``"A "``
   (kind ``rating``), stay/leave after ``"A 3"`` (kind ``end``) and after ``"none"`` (kind
   ``end_after_none``), two stay/leave priors, one per prompt shape;
   the follow-ups' priors are kept per persona and slate size:
   `agents.llm_decider.prior_contexts`). The mean of those answers is the model's label
   *prior* in that context.
2. **Divide it out.** A real answer ``p`` becomes ``p / prior``, renormalised. A constant label
   bias cancels exactly; what is left is how the answer depends on the items. Zhao et al. take
   the argmax of ``softmax(diag(prior)^-1 p)``; we sample from the answer, so we renormalise the
   ratio instead (the same argmax, and a proper distribution).

The context is the persona: it is part of every prompt's stable prefix and differs per user, so
the prior is estimated per persona (most faithful to the paper, where the prior is that of the
whole prompt but its test input). Memories, emotion and the day change at every decision and
carry item titles, so they count as input, not context: keeping them would cost a content-free
call per decision. The `LLMDecider` asks for the priors it lacks in one batched ``score`` call
per question kind (every missing persona × placeholder), the first time a persona meets that
question, and keeps them in `LabelPriors` for the rest of the job (and the backend's disk cache
keeps the answers across jobs and resumed runs). Calibration draws no random numbers: the
decider's random stream is the same with or without it.

The estimates are kept with the job's results (``llm_calibration.json``, `LabelPriors.record`),
so a reader sees which labels the model favoured and by how much.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from agents import prompts as P

#: ``decider.llm.calibration``: answers as the model gives them, or divided by its label prior.
METHODS = ("none", "contextual")
REFERENCE = "Zhao, Wallace, Feng, Klein, Singh (2021): Calibrate Before Use (ICML)"
_FLOOR = 1e-12  # a label the model never gives in the content-free context is not divided by 0

Key = tuple[str, tuple[str, ...], str]  # (question kind, labels, context = system prompt)


def divide_out(probs: np.ndarray, prior: np.ndarray) -> np.ndarray:
    """(n, m) answers ``probs`` divided by the (n, m) or (m,) label ``prior``, renormalised
    per row: ``q ∝ p / prior``."""
    q = probs / np.maximum(prior, _FLOOR)
    total = q.sum(axis=-1, keepdims=True)
    return np.where(total > 0, q / np.where(total > 0, total, 1.0), probs)


def mean_prior(answers: np.ndarray) -> np.ndarray:
    """The label prior from the (V, m) answers to V content-free variants: their mean,
    renormalised (the answers are probabilities already; this only removes rounding)."""
    mean = answers.mean(axis=0)
    return mean / mean.sum()


class LabelPriors:
    """The label priors estimated so far in a job, by (question kind, labels, context), and
    which user each came from (for `record`)."""

    def __init__(self) -> None:
        self.priors: dict[Key, np.ndarray] = {}
        self.users: dict[tuple[str, tuple[str, ...]], dict[int, Key]] = {}

    def __len__(self) -> int:
        return len(self.priors)

    def missing(self, kind: str, labels: Sequence[str], contexts: Sequence[str]) -> list[str]:
        """The distinct ``contexts`` without a prior for (``kind``, ``labels``), in order."""
        labs = tuple(labels)
        out: dict[str, None] = {}
        for c in contexts:
            if (kind, labs, c) not in self.priors:
                out.setdefault(c)
        return list(out)

    def add(self, kind: str, labels: Sequence[str], context: str, prior: np.ndarray) -> None:
        self.priors[(kind, tuple(labels), context)] = np.asarray(prior, dtype=np.float64)

    def rows(
        self, kind: str, labels: Sequence[str], contexts: Sequence[str], users: Sequence[int]
    ) -> tuple[np.ndarray, np.ndarray]:
        """(n, m) priors of ``contexts`` (uniform where none is known) and (n,) bool: known.
        Notes which of ``users`` (one per context) each known prior belongs to."""
        labs = tuple(labels)
        m = len(labs)
        out = np.full((len(contexts), m), 1.0 / m)
        known = np.zeros(len(contexts), dtype=bool)
        seen = self.users.setdefault((kind, labs), {})
        for row, (c, u) in enumerate(zip(contexts, users, strict=True)):
            prior = self.priors.get((kind, labs, c))
            if prior is not None:
                out[row], known[row] = prior, True
                seen.setdefault(int(u), (kind, labs, c))
        return out, known

    def record(self, **meta: Any) -> dict[str, Any]:
        """The estimates as a JSON-ready mapping: ``meta`` (backend, model...), the method, the
        placeholders and, per (question kind, labels), every user's prior and their mean."""
        questions = []
        for (kind, labs), by_user in sorted(self.users.items()):
            if not by_user:
                continue
            priors = {str(u): self.priors[key].tolist() for u, key in sorted(by_user.items())}
            stack = np.array(list(priors.values()))
            questions.append(
                {
                    "kind": kind,
                    "labels": list(labs),
                    "personas": len(priors),
                    "mean_prior": stack.mean(axis=0).tolist(),
                    "min_prior": stack.min(axis=0).tolist(),
                    "max_prior": stack.max(axis=0).tolist(),
                    "priors": priors,
                }
            )
        return {
            **meta,
            "method": "contextual",
            "reference": REFERENCE,
            "prompt_version": P.PROMPT_VERSION,
            "placeholders": list(P.CONTENT_FREE),
            "questions": questions,
        }


__all__ = ["METHODS", "LabelPriors", "divide_out", "mean_prior"]
