"""Interviews: ask any user of a finished run a question; the answer uses their memory.

Saving (`save_user_state`, called by the runner at the end of each job) writes the final state
of every user into the job's part folder:

- ``users.npz`` (compressed): every array of the world's `simenv.users.UserState` (persona,
  drifted and initial taste, emotion, presence, memory records with their ring pointer, the
  recent-items and inbox rings, genre history, the last tick's session length), flattened by
  `user_arrays`, and the topic features of every item the state refers to;
- ``users.json``: topic names, the titles and descriptions of those items (only those: the file
  is bounded by users × memory slots, not by the catalog's growth) and, for LLM runs, the
  reflection texts keyed by (user, memory slot).

Loading rebuilds the same `UserState` (`users_from_arrays`) inside a `SavedJob`. Interviewing
(`interview`) loads one job of a run folder (default: the first job with saved
state; ``policy`` / ``seed`` select), writes one prompt per (user, question) from
`agents.prompts` (the persona as the decisions saw it, memories retrieved by relevance to the
question, emotion in words, presence on the app, the quoted question) and answers all of them
with one batched ``backend.generate`` call. The backend is the run's ``decider.llm`` when the
run had LLM personas, else the embedded SmolLM2-135M; any field can be overridden.

Relevance of a memory to a question: all-MiniLM-L6-v2 embeddings of the question and of the
item texts when the run's ``decider.llm.embeddings`` resolves to MiniLM; otherwise the topic
features, the query being the topics named in the question plus the items whose titles it
quotes (no match: memories rank by recency and importance alone).
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np

from agents import prompts as P
from agents.emotion import EmotionState
from agents.memory import MemoryKind, MemoryStore
from agents.persona import PersonaTable
from simenv.studies.run_folder import (
    CONFIG,
    USERS_JSON,
    USERS_NPZ,
    Part,
    RunFolder,
    atomic_write,
    write_text,
)
from simenv.users import UserState

if TYPE_CHECKING:
    from scenarios.schema import LLMConfig, Scenario
    from simenv.llm import LLMBackend
    from simenv.llm.embed import TextEmbedder
    from simenv.world import World

STATE_VERSION = 2
DEFAULT_MEMORIES = 10
DEFAULT_MAX_TOKENS = 80

_MEMORY_FIELDS = ("kind", "item", "tick", "rating", "valence", "importance", "ptr")
# int64 ids and pointers are stored as int32 (the file stays small); loading casts them back
_NARROW = {"recent", "inbox", "recent_ptr", "inbox_ptr", "session_length", "liked", "disliked"}


class InterviewError(ValueError):
    """A run, job or user that cannot be interviewed (the message lists what exists)."""


# -------------------------------------------------------------------------------- saving


def _stored(name: str, value: np.ndarray) -> np.ndarray:
    return value.astype(np.int32) if name in _NARROW or name in ("item", "ptr") else value


def user_arrays(users: UserState) -> dict[str, np.ndarray]:
    """Every array of ``users`` under a flat name: ``user_*``, ``persona_*``, ``emotion_*``,
    ``memory_*`` (the fields of `UserState`, `PersonaTable`, `EmotionState`, `MemoryStore`)."""
    out: dict[str, np.ndarray] = {}
    for f in dataclasses.fields(UserState):
        value = getattr(users, f.name)
        if isinstance(value, np.ndarray):
            out[f"user_{f.name}"] = _stored(f.name, value)
    for part, obj in (("persona", users.persona), ("emotion", users.emotion)):
        for f in dataclasses.fields(obj):
            out[f"{part}_{f.name}"] = _stored(f.name, getattr(obj, f.name))
    for name in _MEMORY_FIELDS:
        out[f"memory_{name}"] = _stored(name, getattr(users.memory, name))
    return out


def users_from_arrays(a: dict[str, np.ndarray]) -> UserState:
    """The `UserState` that `user_arrays` flattened."""

    def part(prefix: str, cls: type) -> dict[str, np.ndarray]:
        # fields with a default may be missing from older files (persona latent factors)
        return {
            f.name: _loaded(f.name, a[f"{prefix}_{f.name}"])
            for f in dataclasses.fields(cls)
            if f"{prefix}_{f.name}" in a or f.default_factory is dataclasses.MISSING
        }

    kind = a["memory_kind"]
    memory = MemoryStore(kind.shape[0], kind.shape[1])
    for name in _MEMORY_FIELDS:
        setattr(memory, name, a[f"memory_{name}"].astype(getattr(memory, name).dtype))
    arrays = {
        f.name: _loaded(f.name, a[f"user_{f.name}"])
        for f in dataclasses.fields(UserState)
        if f"user_{f.name}" in a
    }
    return UserState(
        persona=PersonaTable(**part("persona", PersonaTable)),
        emotion=EmotionState(**part("emotion", EmotionState)),
        memory=memory,
        **arrays,
    )


def _loaded(name: str, value: np.ndarray) -> np.ndarray:
    return value.astype(np.int64) if name in _NARROW else value


def save_user_state(world: World, folder: Path) -> tuple[Path, Path]:
    """Write the final user state of ``world`` into ``folder`` (see the module docstring)."""
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    users = world.users
    mem, pt = users.memory, users.persona
    n_items = world.items.size
    refs = np.concatenate([mem.item.ravel(), pt.liked.ravel(), pt.disliked.ravel()])
    item_ids = np.unique(refs[(refs >= 0) & (refs < n_items)]).astype(np.int64)
    arrays: dict[str, np.ndarray] = {
        "version": np.asarray(STATE_VERSION),
        "tick": np.asarray(world.tick),
        "item_ids": item_ids,
        "item_features": world.items.features[item_ids],
        **user_arrays(users),
    }
    reflections = world.decider.reflection_texts()
    meta = {
        "version": STATE_VERSION,
        "tick": int(world.tick),
        "n_users": int(world.n_users),
        "memory_capacity": int(mem.capacity),
        "decider": world.decider.name,
        "topic_names": [str(t) for t in world.items.topic_names],
        "item_titles": [str(world.items.titles[i]) for i in item_ids.tolist()],
        "item_descriptions": [str(world.items.descriptions[i]) for i in item_ids.tolist()],
        "reflections": [
            [int(u), int(s), str(text)]
            for (u, s), text in sorted(reflections.items())
            if mem.kind[u, s] == MemoryKind.REFLECTION
        ],
    }
    npz, js = folder / USERS_NPZ, folder / USERS_JSON

    def write_npz(tmp: Path) -> None:
        with open(tmp, "wb") as f:
            np.savez_compressed(f, **arrays)  # type: ignore[arg-type]

    atomic_write(npz, write_npz)
    write_text(js, json.dumps(meta, ensure_ascii=False, separators=(",", ":")) + "\n")
    return npz, js


# -------------------------------------------------------------------------------- loading


@dataclass
class SavedJob:
    """One finished job's users (the world's `UserState` as saved by `save_user_state`) and
    the texts and features of the items their state refers to."""

    policy: str
    seed: int
    folder: Path
    tick: int
    users: UserState
    topic_names: list[str]
    item_features: np.ndarray  # (max referenced id + 1, d), zero rows for unreferenced items
    item_titles: dict[int, str]
    item_descriptions: dict[int, str]
    reflections: dict[tuple[int, int], str] = field(default_factory=dict)
    decider: str = ""

    @property
    def n_users(self) -> int:
        return self.users.n

    def title(self, item: int) -> str:
        return self.item_titles.get(item, f"item {item}")


def load_user_state(folder: Path, policy: str = "", seed: int = 0) -> SavedJob:
    """Read ``users.npz`` / ``users.json`` of one part folder."""
    folder = Path(folder)
    with np.load(folder / USERS_NPZ) as z:
        a = {k: z[k] for k in z.files}
    meta = json.loads((folder / USERS_JSON).read_text())
    if int(a["version"]) != STATE_VERSION or meta.get("version") != STATE_VERSION:
        raise InterviewError(
            f"{folder}: user state version {int(a['version'])} is not {STATE_VERSION}; "
            "run the scenario again into a new --out"
        )
    ids = a["item_ids"].astype(np.int64)
    feats = a["item_features"]
    dense = np.zeros((int(ids.max()) + 1 if ids.size else 1, feats.shape[1]), dtype=np.float32)
    dense[ids] = feats
    return SavedJob(
        policy=policy,
        seed=seed,
        folder=folder,
        tick=int(a["tick"]),
        users=users_from_arrays(a),
        topic_names=list(meta["topic_names"]),
        item_features=dense,
        item_titles=dict(zip(ids.tolist(), meta["item_titles"], strict=True)),
        item_descriptions=dict(zip(ids.tolist(), meta["item_descriptions"], strict=True)),
        reflections={(int(u), int(s)): str(t) for u, s, t in meta["reflections"]},
        decider=str(meta.get("decider", "")),
    )


def load_scenario(run: Path) -> Scenario:
    """The resolved scenario of a run folder (its ``config.yaml``)."""
    folder = RunFolder(run)
    if not folder.is_run():
        what = (
            "does not exist" if not folder.path.exists() else f"is not a run folder (no {CONFIG})"
        )
        raise InterviewError(f"{run} {what}; pass a folder written by `recloop run`")
    return folder.scenario()


def run_jobs(run: Path, scenario: Scenario) -> list[tuple[str, int, Path]]:
    """Every (policy label, seed, part folder) of the run, in the runner's order."""
    return [(p.label, p.seed, p.path) for p in RunFolder(run).parts(scenario)]


def has_state(part: Path) -> bool:
    return Part(Path(part), "", 0).has_user_state()


def select_job(
    run: Path, scenario: Scenario, policy: str | None = None, seed: int | None = None
) -> tuple[str, int, Path]:
    """The job to interview: the first with saved state among those matching policy/seed."""
    jobs = run_jobs(run, scenario)
    labels = list(dict.fromkeys(label for label, _, _ in jobs))
    if policy is not None:
        names = {cfg.display: cfg.name for cfg in scenario.policies}
        match = [lab for lab in labels if lab == policy]
        match = match or [lab for lab in labels if names[lab] == policy]
        if len(match) != 1:
            what = "is not" if not match else "matches several policies"
            raise InterviewError(
                f"policy {policy!r} {what} in this run; policies: {', '.join(labels)}"
            )
        jobs = [j for j in jobs if j[0] == match[0]]
    if seed is not None:
        if seed not in scenario.seeds:
            raise InterviewError(
                f"seed {seed} is not in this run; seeds: {', '.join(map(str, scenario.seeds))}"
            )
        jobs = [j for j in jobs if j[1] == seed]
    saved = [j for j in jobs if has_state(j[2])]
    if saved:
        return saved[0]
    every = [f"{lab} seed {s}" for lab, s, p in run_jobs(run, scenario) if has_state(p)]
    asked = [f"policy {policy!r}"] if policy is not None else []
    asked += [f"seed {seed}"] if seed is not None else []
    scope = f"the {' '.join(asked)} job" if asked else "this run"
    hint = (
        f"; jobs with saved state: {', '.join(every)}"
        if every
        else " (its jobs did not finish, or ran before recloop saved user states: run the "
        "scenario again into a new --out)"
    )
    raise InterviewError(f"{run}: {scope} has no saved user state{hint}")


def load_job(
    run: Path, policy: str | None = None, seed: int | None = None
) -> tuple[Scenario, SavedJob]:
    """The scenario of ``run`` and the user state of the selected job."""
    scenario = load_scenario(run)
    label, s, part = select_job(run, scenario, policy, seed)
    return scenario, load_user_state(part, label, s)


# -------------------------------------------------------------------------------- prompts


def check_users(state: SavedJob, users: Sequence[int]) -> list[int]:
    out = [int(u) for u in users]
    if not out:
        raise InterviewError("no user given (--user N)")
    bad = [u for u in out if not 0 <= u < state.n_users]
    if bad:
        raise InterviewError(
            f"user {bad[0]} does not exist in {state.policy} seed {state.seed}; "
            f"users are 0..{state.n_users - 1}"
        )
    return out


def persona_prompt(state: SavedJob, user: int, max_text: int = P.MAX_TEXT) -> str:
    """The persona in words, exactly as `LLMDecider.system_prompts` writes it."""

    def titles(items: Sequence[int]) -> list[str]:
        return [state.item_titles[i] for i in items if i in state.item_titles]

    return P.persona_of(state.users.persona, user, state.topic_names, titles, max_text)


def topic_query(state: SavedJob, question: str) -> np.ndarray:
    """(d,) query in topic space: topics named in the question + items whose title it names."""
    text = " ".join(question.lower().split())
    d = state.item_features.shape[1]
    q = np.zeros(d, dtype=np.float32)
    for t, name in enumerate(state.topic_names[:d]):
        if name and name.lower() in text:
            q[t] += 1.0
    for item, title in state.item_titles.items():
        if len(title) > 3 and title.lower() in text and item < state.item_features.shape[0]:
            f = state.item_features[item]
            q += f / max(float(np.linalg.norm(f)), 1e-12)
    return q


def retrieve(
    state: SavedJob,
    users: Sequence[int],
    questions: Sequence[str],
    top: int,
    embedder: TextEmbedder | None = None,
) -> np.ndarray:
    """(n, k) memory slots per (user, question) row, best first, -1 padded; ``top`` 0 = all."""
    mem = state.users.memory
    users_a = np.asarray(users, dtype=np.int64)
    k = mem.capacity if top <= 0 else min(top, mem.capacity)
    if embedder is None:
        feats = state.item_features
        query = np.stack([topic_query(state, q) for q in questions]) if questions else feats[:0]
    else:
        ids = sorted(state.item_titles)
        n = max(ids) + 1 if ids else 1
        texts = [f"{state.item_titles[i]}. {state.item_descriptions.get(i, '')}" for i in ids]
        vecs = embedder.embed([*texts, *questions])
        feats = np.zeros((n, vecs.shape[1]), dtype=np.float32)
        feats[ids] = vecs[: len(ids)]
        query = vecs[len(ids) :]
    # memory items outside the saved texts (none in practice) get no relevance
    items = mem.item[users_a]
    safe = MemoryStore(users_a.size, mem.capacity)
    for name in ("kind", "tick", "importance"):
        getattr(safe, name)[:] = getattr(mem, name)[users_a]
    safe.item[:] = np.where(items < feats.shape[0], items, -1)
    return safe.retrieve(np.arange(users_a.size), query, feats, state.tick, top=k)


def memory_lines(
    state: SavedJob, user: int, slots: Sequence[int], max_text: int = P.MAX_TEXT
) -> list[str]:
    """The memories in ``slots`` of one user in words, in the order they were written (the ring
    pointer gives it; the decisions' prompts order by day, then by slot)."""
    mem = state.users.memory
    ptr, cap = int(mem.ptr[user]), mem.capacity
    chosen = sorted(
        (int(s) for s in slots if s >= 0), key=lambda s: (int(mem.tick[user, s]), (s - ptr) % cap)
    )
    lines = []
    for s in chosen:
        kind, item = int(mem.kind[user, s]), int(mem.item[user, s])
        lines.append(
            P.memory_line(
                kind,
                state.title(item) if item >= 0 else None,
                int(mem.tick[user, s]),
                float(mem.rating[user, s]),
                state.reflections.get((user, s)),
                max_text,
            )
        )
    return lines


def situation(state: SavedJob, user: int, max_text: int = P.MAX_TEXT) -> str:
    """Presence on the app (with the remembered days) and, when it changed, the current taste."""
    mem = state.users.memory
    kinds, ticks = mem.kind[user], mem.tick[user]

    def last(kind: MemoryKind) -> int | None:
        t = ticks[kinds == kind]
        return int(t.max()) if t.size else None

    left, back = last(MemoryKind.LEFT), last(MemoryKind.RETURNED)
    returned = back if back is not None and (left is None or back >= left) else None
    text = P.presence_text(bool(state.users.present[user]), left, returned)
    before = [int(i) for i in np.argsort(-state.users.persona.taste[user], kind="stable")[:3]]
    now = [int(i) for i in np.argsort(-state.users.taste[user], kind="stable")[:3]]
    if set(before) != set(now):
        lately = P.taste_now_text(state.users.taste[user], state.topic_names, max_text)
        text = f"{text} {lately}" if lately else text
    return text


@dataclass(frozen=True)
class Answer:
    user: int
    question: str
    prompt: str
    answer: str  # `tidy_answer` of ``raw``
    raw: str  # the model's text as generated


_SENTENCE_END = re.compile(r"(?<=[.!?])\s+|(?<=[.!?][\"')])\s+")


def tidy_answer(text: str, max_sentences: int = 3) -> str:
    """One line of at most ``max_sentences`` distinct sentences of ``text``.

    Small models loop ("I'm not sure. I'm not sure. ...") and answers stop at ``max_tokens``
    mid-sentence: repeated sentences are dropped, and so is an unfinished last one when a
    finished one comes before it.
    """
    parts = [x for x in _SENTENCE_END.split(" ".join(str(text).split())) if x]
    if len(parts) > 1 and not parts[-1].endswith((".", "!", "?", '"', "'", ")")):
        parts = parts[:-1]
    out: list[str] = []
    for sentence in parts:
        if sentence.lower() not in (x.lower() for x in out):
            out.append(sentence)
        if len(out) == max_sentences:
            break
    return " ".join(out)


def build_prompts(
    state: SavedJob,
    users: Sequence[int],
    questions: Sequence[str],
    *,
    chat: Any = None,
    memories: int = DEFAULT_MEMORIES,
    embedder: TextEmbedder | None = None,
    max_text: int = P.MAX_TEXT,
) -> list[tuple[int, str, str]]:
    """(user, question, prompt) for every user × question, users outer.

    ``chat(system, user) -> str`` is the backend's chat template (default ChatML);
    ``memories``: memories per prompt, retrieved by relevance to the question (0 = all).
    """
    users = check_users(state, users)
    questions = [str(q) for q in questions]
    check_request(questions, memories=memories)
    chat = chat or P.chat_format
    rows = [(u, q) for u in users for q in questions]
    slots = retrieve(state, [u for u, _ in rows], [q for _, q in rows], memories, embedder)
    out = []
    for r, (u, q) in enumerate(rows):
        body = P.interview_user(
            P.memories_text(memory_lines(state, u, slots[r].tolist(), max_text)),
            state.users.emotion.describe(u),
            situation(state, u, max_text),
            state.tick,
            q,
        )
        out.append((u, q, str(chat(P.interview_system(persona_prompt(state, u, max_text)), body))))
    return out


# -------------------------------------------------------------------------------- backend


def check_request(
    questions: Sequence[str],
    *,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    memories: int = DEFAULT_MEMORIES,
    config: LLMConfig | None = None,
) -> None:
    """Refuse an empty question, ``max_tokens`` < 1, ``memories`` < 0, or (given ``config``)
    a backend configuration that cannot work, before any model is loaded."""
    if not questions or any(not str(q).strip() for q in questions):
        raise InterviewError("the question is empty")
    if max_tokens < 1:
        raise InterviewError(f"--max-tokens must be at least 1, got {max_tokens}")
    if memories < 0:
        raise InterviewError(f"--memories must be 0 (all) or more, got {memories}")
    if config is not None:
        from simenv.studies.factory import backend_kwargs

        backend_kwargs(config)  # e.g. the openai backend without a model or an endpoint


def interview_config(
    scenario: Scenario,
    *,
    backend: str | None = None,
    model: str | None = None,
    base_urls: Sequence[str] | None = None,
    api_key_env: str | None = None,
) -> LLMConfig:
    """The run's ``decider.llm`` for LLM runs, else the embedded model, with overrides.

    Changing the backend without naming a model uses the new backend's default model.
    """
    from scenarios.schema import LLMConfig

    run_llm = scenario.decider.llm
    base = run_llm if scenario.decider.kind == "llm" else LLMConfig(embeddings=run_llm.embeddings)
    upd: dict[str, Any] = {}
    if backend is not None and backend != base.backend:
        upd.update(backend=backend, model=None)
    if model is not None:
        upd["model"] = model
    if base_urls:
        upd.update(base_url=base_urls[0], base_urls=list(base_urls[1:]))
    if api_key_env is not None:
        upd["api_key_env"] = api_key_env
    return LLMConfig.model_validate({**base.model_dump(), **upd})


def interview(
    run: Path,
    users: Sequence[int],
    questions: Sequence[str] | str,
    *,
    policy: str | None = None,
    seed: int | None = None,
    backend: LLMBackend | None = None,
    config: LLMConfig | None = None,
    max_tokens: int = DEFAULT_MAX_TOKENS,
    memories: int = DEFAULT_MEMORIES,
    embedder: TextEmbedder | str | None = "config",
    state: SavedJob | None = None,
) -> list[Answer]:
    """Ask every user every question (one batched ``generate`` call); answers in that order.

    ``backend``: an `LLMBackend` (default: built from ``config``, default `interview_config`,
    cached in the run folder's ``llm_cache.sqlite`` when the config caches). ``embedder``:
    ``"config"`` = from the config's ``embeddings`` setting; None = topic features.
    ``state``: the job's `SavedJob` when already loaded (`load_job`), else loaded here.
    """
    if isinstance(questions, str):
        questions = [questions]
    check_request(questions, max_tokens=max_tokens, memories=memories)
    if state is None or config is None:
        scenario, state = load_job(Path(run), policy, seed)
        config = config or interview_config(scenario)
    check_users(state, users)
    cfg = config
    if backend is None:  # first: a bad backend configuration fails before any model loads
        from simenv.studies.factory import make_backend_for

        backend = make_backend_for(cfg, Path(run) if cfg.cache else None)
    if embedder == "config":
        from simenv.studies.factory import make_embedder

        embedder = make_embedder(cfg)
    rows = build_prompts(
        state,
        users,
        questions,
        chat=backend.chat_prompt,
        memories=memories,
        embedder=embedder if not isinstance(embedder, str) else None,
    )
    texts = backend.generate([p for _, _, p in rows], max_tokens)
    return [
        Answer(user=u, question=q, prompt=p, answer=tidy_answer(str(t)), raw=str(t))
        for (u, q, p), t in zip(rows, texts, strict=True)
    ]
