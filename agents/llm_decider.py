"""`LLMDecider`: LLM personas deciding for every user of a batch at once.

Per `decide` call, for all n users of the batch together, at most three ``backend.score`` calls
(one per question), each batched over users (and, with contextual calibration, one more per
question kind while some persona's label prior is not known yet: below):

1. *choice*: which slate item (letters ``A``.. one per slate position) or ``none``;
2. *rating*: ``1``..``5`` for the users who chose an item;
3. *session end*: ``stay`` or ``leave``; not asked at the session's last slate
   (``ctx.last_step``), after which the session ends whatever the user would answer.

A user whose choice or rating question failed (``on_error="utility_fallback"``) is asked
nothing more: the fallback decides that user's whole decision.

The three questions are the parts of ONE structured answer to the choice prompt
(`agents.prompts`, version ``v4``): ``"<label> <stars> <stay|leave>"`` (``"B 4 stay"``, after
``none`` ``"none leave"``), its format stated in the choice question. The choice is scored
at the assistant's start; the stars on the choice prompt + the sampled label + a space
(`agents.prompts.stars_prompt`); stay/leave on that + the sampled digit, or on the choice prompt
+ ``none`` (question kind ``end_after_none``; `agents.prompts.end_prompt`). Every follow-up
prompt starts with the text of the choice prompt, so a backend with a prefix cache computes only
its last partial block and the answer's few tokens.

Answers are probabilities over option labels; the decider samples from them with ``ctx.rng``
(never global state), and item ids come from the labels only (label j is slate position j).
`choice_probabilities` asks the choice question alone and returns its probabilities (what
`recloop calibrate` fits the utility decider to).

Contextual calibration (``calibration="contextual"``, the default; `agents.label_calibration`):
every answer is divided by the model's label prior for that question kind and persona, estimated
from content-free variants of the prompt, and renormalised before sampling. The priors a batch
lacks are asked for in one extra batched ``score`` call per question kind (all missing personas ×
placeholders), the first time a persona meets that question; they are kept for the rest of the
job (`label_priors` returns them). Calibration draws no random numbers. ``calibration="none"``
samples the model's answers as they are.

Memory relevance: memories are retrieved with `MemoryStore.retrieve`, the query being the mean
vector of the slate items: sentence embeddings of the item texts when an ``embeddings`` cache
(`simenv.llm.embed.ItemEmbeddings`, all-MiniLM-L6-v2) is given, else the items' topic features.

Reflection: every ``reflection_every`` ticks, at the first slate of the tick, one batched
``backend.generate`` call writes a sentence per user in session; it is stored as a
`MemoryKind.REFLECTION` record whose text lives in ``reflections[(user, slot)]`` — bounded by
users × memory slots, and pruned of slots that were overwritten since.

Failures: an `LLMError` from the backend (after the retries of `RetryingBackend`), or an unusable
answer (probabilities not finite / wrong shape / not summing to 1), either raises an `LLMError`
naming the backend (``on_error="fail"``) or hands the affected users to the fallback
`UtilityDecider` (``on_error="utility_fallback"``), counted in ``tick_counters()["llm_fallbacks"]``.

Fallback share: the decider counts its decisions (one per user and slate) and those that fell
back, and keeps the last failure's message (redacted); `stats` reports them. With
``max_fallback_share`` set, the job stops with an `LLMError` naming the backend, the share, the
limit and the last failure when the share of decisions that fell back passes the limit. The
rule (`check_fallback_share`): after every `decide`, once the job has made at least
``SHARE_CHECK_BATCHES`` (4) times as many decisions as its largest batch, so that one failed
call (which affects one batch) can never carry the share past 25% by itself; and at the end of
the job (`finish`), whatever its size. A server that is dead from the start thus stops a run
within its first few slates, while a single transient failure in a large run does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING, Any

import numpy as np

from agents import prompts as P
from agents.deciders import BaseDecider, DecisionContext, Decisions, UtilityDecider
from agents.label_calibration import METHODS, LabelPriors, divide_out, mean_prior
from agents.memory import MemoryKind
from simenv.llm.base import LLMBackend, LLMError
from simenv.llm.redact import redact

if TYPE_CHECKING:
    from simenv.llm.embed import ItemEmbeddings

ON_ERROR = ("fail", "utility_fallback")
#: The fallback share is checked during a job once it has made this many times as many
#: decisions as its largest batch (see the module docstring).
SHARE_CHECK_BATCHES = 4


class LLMDecider(BaseDecider):
    """A `Decider` asking an `LLMBackend` or any wrapper around one (see the module docstring);
    prompts are in the backend's chat format (``backend.chat_prompt``)."""

    name = "llm"

    def __init__(
        self,
        backend: LLMBackend,
        *,
        fallback: UtilityDecider | None = None,
        on_error: str = "fail",
        memory_top: int = 5,
        reflection_every: int = 0,
        reflection_tokens: int = 32,
        max_text: int = P.MAX_TEXT,
        embeddings: ItemEmbeddings | None = None,
        max_fallback_share: float | None = None,
        calibration: str = "contextual",
    ) -> None:
        if on_error not in ON_ERROR:
            raise ValueError(f"on_error must be one of {ON_ERROR}, got {on_error!r}")
        if max_fallback_share is not None and not 0.0 <= max_fallback_share <= 1.0:
            raise ValueError(f"max_fallback_share must be in [0, 1], got {max_fallback_share}")
        if calibration not in METHODS:
            raise ValueError(f"calibration must be one of {METHODS}, got {calibration!r}")
        self.backend = backend
        self.fallback = fallback or UtilityDecider()
        self.on_error = on_error
        self.memory_top = memory_top
        self.reflection_every = reflection_every
        self.reflection_tokens = reflection_tokens
        self.max_text = max_text
        self.embeddings = embeddings
        self.calibration = calibration
        self.priors = LabelPriors()  # contextual calibration: the label priors estimated so far
        self.reflections: dict[tuple[int, int], str] = {}
        self.max_fallback_share = max_fallback_share
        self.decisions = 0  # one per user and slate decided
        self.fallbacks_total = 0  # of those, decided by the fallback
        self.last_error: str | None = None  # the last failure's message, redacted
        self._largest_batch = 0
        self._fallbacks = 0
        self._chat = backend.chat_prompt

    def __repr__(self) -> str:
        return (
            f"LLMDecider({self.backend!r}, on_error={self.on_error!r}, "
            f"calibration={self.calibration!r})"
        )

    # ------------------------------------------------------------------ hooks
    def attachments(self) -> dict[str, object]:
        """The backend (with its wrappers, cache and connections) and the text embedder:
        a checkpoint names them, a resumed job attaches its own (the decider's state, its
        label priors, counters, reflections and item embeddings, is checkpointed)."""
        found: dict[str, object] = {"backend": self.backend}
        if self.embeddings is not None:
            found["embedder"] = self.embeddings.embedder
        return found

    def tick_counters(self) -> dict[str, float]:
        """Counters since the last call (the world calls this once per tick)."""
        out = {"llm_fallbacks": float(self._fallbacks)}
        self._fallbacks = 0
        return out

    def reflection_texts(self) -> dict[tuple[int, int], str]:
        return self.reflections

    def label_priors(self) -> dict[str, Any]:
        """The label priors divided out of the answers so far (`LabelPriors.record`, with the
        backend and model); empty without contextual calibration or before any decision."""
        if self.calibration == "none" or not len(self.priors):
            return {}
        return self.priors.record(backend=self.backend.name, model=self.backend.model)

    # ------------------------------------------------------------------ prompts
    def system_prompts(self, ctx: DecisionContext) -> list[str]:
        n = len(ctx.item_titles)

        def titles(items: Sequence[int]) -> list[str]:
            return [str(ctx.item_titles[i]) for i in items if 0 <= i < n]

        return [
            P.persona_of(ctx.persona, u, ctx.topic_names, titles, self.max_text)
            for u in ctx.users.tolist()
        ]

    def _title(self, ctx: DecisionContext, item: int) -> str:
        return str(ctx.item_titles[item]) if 0 <= item < len(ctx.item_titles) else f"item {item}"

    def _desc(self, ctx: DecisionContext, item: int) -> str:
        d = ctx.item_descriptions
        return str(d[item]) if 0 <= item < len(d) else ""

    def memory_texts(self, ctx: DecisionContext) -> list[str]:
        mem = ctx.memory
        if mem is None or self.memory_top <= 0:
            return [P.memories_text([])] * ctx.users.size
        feats = ctx.item_features
        if self.embeddings is not None:
            needed = np.concatenate([ctx.slates.ravel(), mem.item[ctx.users].ravel()])
            feats = self.embeddings.matrix(needed, ctx.item_titles, ctx.item_descriptions)
        query = feats[ctx.slates].mean(axis=1)
        slots = mem.retrieve(ctx.users, query, feats, ctx.tick, top=self.memory_top)
        out = []
        for row, u in enumerate(ctx.users.tolist()):
            chosen = [int(s) for s in slots[row] if s >= 0]
            chosen.sort(key=lambda s: (int(mem.tick[u, s]), s))  # oldest first
            lines = []
            for s in chosen:
                kind, item = int(mem.kind[u, s]), int(mem.item[u, s])
                lines.append(
                    P.memory_line(
                        kind,
                        self._title(ctx, item) if item >= 0 else None,
                        int(mem.tick[u, s]),
                        float(mem.rating[u, s]),
                        self.reflections.get((u, s)),
                        self.max_text,
                    )
                )
            out.append(P.memories_text(lines))
        return out

    def emotion_texts(self, ctx: DecisionContext) -> list[str]:
        e = ctx.emotion
        return [
            P.emotion_text(
                float(e.satisfaction[u]),
                float(e.fatigue[u]),
                float(e.boredom[u]),
                float(e.curiosity[u]),
            )
            for u in ctx.users.tolist()
        ]

    def choice_labels(self, k: int) -> list[str]:
        if k > len(P.CHOICE_LABELS):
            raise ValueError(
                f"the LLM decider labels at most {len(P.CHOICE_LABELS)} slate items, got k={k}"
            )
        return [*P.CHOICE_LABELS[:k], P.NONE_LABEL]

    def choice_users(
        self, ctx: DecisionContext, memories: Sequence[str], emotions: Sequence[str]
    ) -> list[str]:
        """The choice question's user turn of every row of ``ctx``."""
        labels = self.choice_labels(ctx.slates.shape[1])[:-1]
        out = []
        for row in range(ctx.users.size):
            items = ctx.slates[row].tolist()
            block = P.option_block(
                labels,
                [self._title(ctx, i) for i in items],
                [self._desc(ctx, i) for i in items],
                self.max_text,
            )
            out.append(P.choice_user(memories[row], emotions[row], ctx.tick, block, labels))
        return out

    def choice_prompts(
        self, ctx: DecisionContext, systems: Sequence[str], memories: Sequence[str],
        emotions: Sequence[str],
    ) -> list[str]:  # fmt: skip
        """The choice prompt of every row of ``ctx`` (system part + `choice_users`)."""
        users = self.choice_users(ctx, memories, emotions)
        return [self._chat(s, u) for s, u in zip(systems, users, strict=True)]

    # ------------------------------------------------------------------ decide
    def decide(self, ctx: DecisionContext) -> Decisions:
        n, k = ctx.users.size, ctx.slates.shape[1]
        if n == 0:
            return Decisions(np.zeros(0, np.int64), np.zeros(0, np.float32), np.zeros(0, bool))
        systems = self.system_prompts(ctx)
        memories = self.memory_texts(ctx)
        emotions = self.emotion_texts(ctx)
        draws = ctx.rng.random((3, n))  # always 3n draws: the stream does not depend on answers
        bad = np.zeros(n, dtype=bool)

        labels = self.choice_labels(k)
        prompts = self.choice_prompts(ctx, systems, memories, emotions)
        probs, failed = self._choice_scores(ctx, systems, prompts)
        bad |= failed
        pick = _sample(probs, draws[0])
        chosen_pos = np.where((pick < k) & ~bad, pick, -1).astype(np.int64)

        rating = np.full(n, np.nan, dtype=np.float32)
        # the stay/leave prompt of each row: the choice prompt answered up to a rater's stars
        # (None: answered up to `none`)
        stars_of: list[int | None] = [None] * n
        who = np.flatnonzero(chosen_pos >= 0)
        if who.size:
            rprompts = [P.stars_prompt(prompts[r], labels[int(chosen_pos[r])]) for r in who]
            rprobs, rfailed = self._rating_answers(ctx, systems, rprompts, who)
            stars = _sample(rprobs, draws[1, who]) + 1
            rating[who] = stars.astype(np.float32)
            bad[who[rfailed]] = True
            for r, star in zip(who.tolist(), stars.tolist(), strict=True):
                stars_of[r] = int(star)

        if ctx.last_step:  # the session ends anyway: no question to ask
            ended = np.ones(n, dtype=bool)
        else:
            answers = [labels[int(c)] for c in chosen_pos]  # -1: `none`
            ended = self._ask_end(ctx, systems, prompts, answers, stars_of, draws[2], bad)

        if bad.any():
            fb = self.fallback.decide(ctx)
            chosen_pos = np.where(bad, fb.chosen_pos, chosen_pos)
            rating = np.where(bad, fb.rating, rating).astype(np.float32)
            ended = np.where(bad, fb.ended_session, ended)
            self._fallbacks += int(bad.sum())
            self.fallbacks_total += int(bad.sum())
        self.decisions += n
        self._largest_batch = max(self._largest_batch, n)
        if self.decisions >= SHARE_CHECK_BATCHES * self._largest_batch:
            self.check_fallback_share()
        return Decisions(chosen_pos=chosen_pos, rating=rating, ended_session=ended.astype(bool))

    # ------------------------------------------------------------------ fallback share
    def fallback_share(self) -> float:
        """The share of this decider's decisions that fell back (0 before any decision)."""
        return self.fallbacks_total / self.decisions if self.decisions else 0.0

    def check_fallback_share(self) -> None:
        """Raise `LLMError` when the share of decisions that fell back passes
        ``max_fallback_share`` (the module docstring says when it is called)."""
        limit, share = self.max_fallback_share, self.fallback_share()
        if limit is None or share <= limit:
            return
        raise LLMError(
            f"LLM decider: {self.fallbacks_total} of {self.decisions} decisions ({share:.1%}) "
            f"fell back to the utility model, more than decider.llm.max_fallback_share = "
            f"{limit:g}; the {self._describe_backend()} last failed with: "
            f"{self.last_error or 'an unusable answer'}. Finished jobs are kept: run the same "
            "command again to resume"
        )

    def finish(self) -> None:
        """The job is over: check the fallback share whatever the job's size."""
        self.check_fallback_share()

    def _failed(self, message: str) -> None:
        """Remember a failure's message (redacted, one line) as the last error."""
        self.last_error = " ".join(redact(message).split())

    def choice_probabilities(self, ctx: DecisionContext) -> np.ndarray:
        """(n, k + 1) probabilities of slate positions ``A``.. and ``none``: the choice question
        of `decide` (same prompts, one ``score`` call), without sampling, reflection or
        fallback. With contextual calibration (the default) these are the *calibrated*
        probabilities `decide` samples from (the model's answers divided by each persona's label
        prior; one more ``score`` call for personas whose prior is not known yet), so `recloop
        calibrate` distils the calibrated personas. Rows the backend failed on are NaN
        (``on_error="fail"`` raises instead)."""
        if ctx.users.size == 0:
            return np.zeros((0, ctx.slates.shape[1] + 1))
        systems = self.system_prompts(ctx)
        prompts = self.choice_prompts(ctx, systems, self.memory_texts(ctx), self.emotion_texts(ctx))
        probs, failed = self._choice_scores(ctx, systems, prompts)
        probs[failed] = np.nan
        return probs

    def rating_probabilities(self, ctx: DecisionContext) -> np.ndarray:
        """(n, 5) probabilities of 1..5 stars for the item at slate position 0 of each row: the
        rating question of `decide` as if that item had been chosen (the same prompts: the
        choice prompt answered up to ``"A "``, `agents.prompts.stars_prompt`; one ``score``
        call, and with contextual calibration one more for personas whose prior is not known
        yet), without sampling or fallback. Failed rows are NaN."""
        n = ctx.users.size
        if n == 0:
            return np.zeros((0, len(P.RATING_LABELS)))
        systems = self.system_prompts(ctx)
        choice = self.choice_prompts(ctx, systems, self.memory_texts(ctx), self.emotion_texts(ctx))
        prompts = [P.stars_prompt(c, P.CHOICE_LABELS[0]) for c in choice]
        probs, failed = self._rating_answers(ctx, systems, prompts, np.arange(n))
        probs[failed] = np.nan
        return probs

    def _rating_answers(
        self, ctx: DecisionContext, systems: Sequence[str], prompts: list[str], rows: np.ndarray
    ) -> tuple[np.ndarray, np.ndarray]:
        """The stars of ``rows`` of ``ctx`` for their rating ``prompts`` (with contextual
        calibration divided by each persona's label prior, like the choice)."""
        row_systems = [systems[r] for r in rows.tolist()]
        k = ctx.slates.shape[1]
        kinds = ["rating"] * rows.size
        labels = list(P.RATING_LABELS)
        return self._answers(kinds, prompts, labels, row_systems, ctx.users[rows], k)

    def _choice_scores(
        self, ctx: DecisionContext, systems: Sequence[str], prompts: list[str]
    ) -> tuple[np.ndarray, np.ndarray]:
        """The choice question (``prompts``, `choice_prompts`) for every row of ``ctx``."""
        k = ctx.slates.shape[1]
        labels = self.choice_labels(k)
        return self._answers(["choice"] * len(prompts), prompts, labels, systems, ctx.users, k)

    def _ask_end(
        self, ctx: DecisionContext, systems: Sequence[str], choice: Sequence[str],
        answers: Sequence[str], stars: Sequence[int | None], draws: np.ndarray, bad: np.ndarray,
    ) -> np.ndarray:  # fmt: skip
        """Stay or leave for every row of ``ctx`` not yet in ``bad``, one batched ``score``
        call: each row's ``choice`` prompt answered with its label (``answers``) and, for a
        rater, its ``stars`` (`agents.prompts.end_prompt`: question kind ``end``, else
        ``end_after_none``). Rows already in ``bad`` (their choice or rating failed) are not
        asked: the fallback decides them whole (their entry here is True). Marks failed rows in
        ``bad``."""
        ended = np.ones(ctx.users.size, dtype=bool)
        asked = np.flatnonzero(~bad)
        if asked.size == 0:
            return ended
        prompts = [P.end_prompt(choice[r], answers[r], stars[r]) for r in asked.tolist()]
        kinds = ["end_after_none" if stars[r] is None else "end" for r in asked.tolist()]
        k = ctx.slates.shape[1]
        labels = list(P.END_LABELS)
        row_systems = [systems[r] for r in asked.tolist()]
        eprobs, efailed = self._answers(kinds, prompts, labels, row_systems, ctx.users[asked], k)
        bad[asked[efailed]] = True
        ended[asked] = _sample(eprobs, draws[asked]) == 1
        return ended

    # ------------------------------------------------------------------ calibration
    def content_free_prompts(self, kind: str, slate: int, system: str) -> list[str]:
        """The content-free variants of question ``kind`` for the persona ``system`` and slates
        of ``slate`` items, one per placeholder of `agents.prompts.CONTENT_FREE`
        (`agents.prompts.content_free_question`: built like the decisions' prompts)."""
        out = []
        for ph in P.CONTENT_FREE:
            user, start = P.content_free_question(kind, slate, ph, self.max_text)
            out.append(self._chat(system, user) + start)
        return out

    def _answers(
        self, kinds: Sequence[str], prompts: list[str], labels: list[str],
        systems: Sequence[str], users: np.ndarray, slate: int,
    ) -> tuple[np.ndarray, np.ndarray]:  # fmt: skip
        """(n, m) answers to ``prompts`` (row i: question ``kinds[i]`` after a slate of
        ``slate`` items; one ``score`` call) and (n,) rows that failed; with contextual
        calibration divided by the label prior of each row's question kind and persona
        (``systems``), rows whose prior could not be estimated counted as failed."""
        if self.calibration == "none":
            return self._score(prompts, labels)
        rows_of: dict[str, list[int]] = {}
        for i, kind in enumerate(kinds):
            rows_of.setdefault(kind, []).append(i)
        contexts: dict[str, list[str]] = {}
        for kind, rows in rows_of.items():
            kind_systems = [systems[i] for i in rows]
            contexts[kind] = prior_contexts(kind, kind_systems, slate)
            self._estimate_priors(kind, labels, kind_systems, contexts[kind], slate)
        probs, failed = self._score(prompts, labels)
        prior = np.empty_like(probs)
        known = np.zeros(len(prompts), dtype=bool)
        for kind, rows in rows_of.items():
            prior[rows], known[rows] = self.priors.rows(
                kind, labels, contexts[kind], users[rows].tolist()
            )
        return divide_out(probs, prior), failed | ~known

    def _estimate_priors(
        self, kind: str, labels: list[str], systems: Sequence[str], contexts: Sequence[str],
        slate: int,
    ) -> None:  # fmt: skip
        """One batched ``score`` call for the content-free variants of every persona in
        ``systems`` without a prior for (``kind``, ``labels``) in its context (``contexts``,
        `prior_contexts`); the mean answer of each persona whose variants all succeeded
        becomes its prior."""
        missing = self.priors.missing(kind, labels, contexts)
        if not missing:
            return
        system_of = dict(zip(contexts, systems, strict=True))
        prompts = [p for c in missing for p in self.content_free_prompts(kind, slate, system_of[c])]
        probs, failed = self._score(prompts, labels)
        v = len(P.CONTENT_FREE)
        for i, context in enumerate(missing):
            rows = slice(i * v, (i + 1) * v)
            if not failed[rows].any():
                self.priors.add(kind, labels, context, mean_prior(probs[rows]))

    def _describe_backend(self) -> str:
        return f"{self.backend.name} backend (model {self.backend.model!r})"

    def _score(self, prompts: list[str], labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
        """(n, len(labels)) probabilities and (n,) bool rows that failed (uniform there)."""
        n, m = len(prompts), len(labels)
        uniform = np.full((n, m), 1.0 / m)
        try:
            res = self.backend.score(prompts, [labels] * n)
        except LLMError as e:
            if self.on_error == "fail":
                raise LLMError(
                    redact(f"LLM decider: the {self._describe_backend()} failed: {e}")
                ) from e
            self._failed(str(e))
            return uniform, np.ones(n, dtype=bool)
        out = uniform.copy()
        failed = np.zeros(n, dtype=bool)
        for i, r in enumerate(res):
            a = np.asarray(r, dtype=np.float64)
            if a.shape != (m,) or not np.all(np.isfinite(a)) or abs(a.sum() - 1.0) > 1e-5:
                failed[i] = True
            else:
                out[i] = a
        if failed.any():
            unusable = f"unusable probabilities for {int(failed.sum())} of {n} prompts"
            if self.on_error == "fail":
                raise LLMError(f"LLM decider: the {self._describe_backend()} returned {unusable}")
            self._failed(unusable)
        return out, failed

    # ------------------------------------------------------------------ reflection
    def _reflection_due(self, ctx: DecisionContext) -> bool:
        every = self.reflection_every
        return every > 0 and ctx.step == 0 and ctx.tick > 0 and ctx.tick % every == 0

    def reflect(self, ctx: DecisionContext) -> None:
        """The reflection phase: every ``reflection_every`` ticks, before the first slate of a
        session, one batched ``generate`` call writes a reflection per user of ``ctx`` into
        memory."""
        mem = ctx.memory
        if mem is None or ctx.users.size == 0 or not self._reflection_due(ctx):
            return
        systems = self.system_prompts(ctx)
        memories = self.memory_texts(ctx)
        emotions = self.emotion_texts(ctx)
        prompts = [
            self._chat(systems[r], P.reflection_user(memories[r], emotions[r], ctx.tick))
            for r in range(ctx.users.size)
        ]
        try:
            texts = self.backend.generate(prompts, self.reflection_tokens)
        except LLMError as e:
            if self.on_error == "fail":
                raise LLMError(
                    redact(f"LLM decider: the {self._describe_backend()} failed: {e}")
                ) from e
            self._failed(str(e))
            return
        slots = mem.record(ctx.users, MemoryKind.REFLECTION, -1, ctx.tick, importance=0.8)
        # drop texts whose slots were overwritten by other records since
        stale = [key for key in self.reflections if mem.kind[key] != MemoryKind.REFLECTION]
        for key in stale:
            del self.reflections[key]
        for u, s, text in zip(ctx.users.tolist(), slots.tolist(), texts, strict=True):
            self.reflections[(u, s)] = " ".join(str(text).split())[: self.max_text]

    def stats(self) -> dict[str, Any]:
        """This decider's decisions and fallbacks (``decisions``, ``fallbacks``,
        ``fallback_share``, ``last_error``) and the statistics of every layer of the backend
        (``layers``: `simenv.llm.wrappers.stats_dict`)."""
        from simenv.llm.wrappers import stats_dict

        return {
            "decisions": self.decisions,
            "fallbacks": self.fallbacks_total,
            "fallback_share": self.fallback_share(),
            "last_error": self.last_error,
            **stats_dict(self.backend),
        }


def prior_contexts(kind: str, systems: Sequence[str], slate: int) -> list[str]:
    """The context a label prior is kept under: the persona (``systems``); for the follow-up
    questions also the slate size, since their content-free prompts continue a content-free
    choice turn of that size (the choice question's labels name it already)."""
    if kind == "choice":
        return list(systems)
    return [f"{s}\n[after a slate of {slate}]" for s in systems]


def _sample(probs: np.ndarray, u: np.ndarray) -> np.ndarray:
    """Inverse-CDF draw per row of ``probs`` with uniform numbers ``u``."""
    if probs.shape[0] == 0:
        return np.zeros(0, dtype=np.int64)
    cdf = np.cumsum(probs, axis=1)
    cdf[:, -1] = 1.0
    return np.minimum((cdf < u[:, None]).sum(axis=1), probs.shape[1] - 1).astype(np.int64)
