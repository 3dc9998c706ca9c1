"""How much memory a world needs, estimated from its scenario before anything is allocated.

`World` calls `check_fits` first thing, and `recloop run` before it writes the run folder, so a
size that cannot fit (``population.size=100000000``) is refused at once with one line giving
the estimate and what the machine has, instead of numpy's allocation traceback or minutes of
swapping. The estimate has three parts:

- **resident**: the arrays the world keeps, per user (`user_array_bytes`: persona, taste,
  emotion, memory, recent and inbox rings, genre history, the social graph's CSR rows) and per
  item slot (`item_array_bytes`: the item store; `item_capacity` slots, publications included),
  plus the Python objects beside them (a mesa agent per user and item, item titles and
  descriptions);
- **working**: the larger of what building needs for a moment (networkx graph, catalog texts,
  example-item scores) and what one tick needs per user in session (decider, policy ranking,
  feedback), with about `ACTIVE_SHARE` × ``population.activity_scale`` of the users in session;
- **log**: the interaction log held until the job ends (22 bytes per impression, twice: the
  tick chunks and the combined frame), for ``ticks`` × ``session.max_steps`` slates per active
  user.

The array bytes are exact (a test compares them with a built world's arrays); the Python-object
and working-set constants were measured with tracemalloc (filter_bubble, popularity and the
other built-in policies: 1.3-6 KiB per user in session) and the total checked against the peak
resident memory of ``benchmarks/run.py`` (``python benchmarks/run.py --sizes 1000 10000
100000``; README, Benchmarks). An LLM backend's model and a policy's own learned state (a few
floats per user or item) are not included.
"""

from __future__ import annotations

import math
import os
from dataclasses import dataclass, field
from pathlib import Path

from agents.persona import example_chunk_rows
from scenarios.schema import CreatorsConfig, Scenario

# Python objects beside the arrays (bytes; measured with tracemalloc, see the module docstring)
AGENT_BYTES = 480  # one mesa agent (UserAgent/ItemAgent) with its AgentSet entries
ITEM_TEXT_BYTES = 200  # a synthetic item's title and description strings
CATALOG_BUILD_BYTES = 400  # per item, for a moment while the catalog is generated
GRAPH_BUILD_BYTES = 380  # per friendship edge, while networkx builds the graph
EXAMPLE_SCORE_BYTES = 20  # per (user, item) score when personas pick example items
TICK_BYTES = 4096  # per user in session: slates, utilities, policy ranking, feedback
LOG_ROW_BYTES = 22  # one impression in the interaction log (tick, step, user, position, ...)
#: Share of the users in session in a tick at ``activity_scale`` 1 (about 25% in the synthetic
#: scenarios, 42% on MovieLens): an upper estimate.
ACTIVE_SHARE = 0.5
#: Example items kept per persona (liked and disliked, `agents.persona`).
PERSONA_EXAMPLES = 5
MOVIELENS_ITEMS = 1682
MOVIELENS_GENRES = 19


class WorldTooLargeError(ValueError):
    """The world a scenario describes needs more memory than the machine has available."""


@dataclass(frozen=True)
class WorldSize:
    """Estimated bytes of a world, by part (see the module docstring)."""

    users: int
    items: int
    working: int
    log: int
    n_users: int = field(default=0)
    n_items: int = field(default=0)

    @property
    def total(self) -> int:
        return self.users + self.items + self.working + self.log


def user_array_bytes(scenario: Scenario) -> int:
    """Bytes of the per-user arrays of a world (persona, `UserState`, memory, social rows)."""
    d = n_topics(scenario)
    s = scenario.session
    persona = 5 * 4 + d * 4 + 2 * PERSONA_EXAMPLES * 8  # traits f32, taste f32, examples i64
    tastes = 4 * d * 4  # taste, taste_initial, recent_profile, genre_history (f32)
    emotion = 4 * 4  # satisfaction, fatigue, boredom, curiosity (f32)
    rings = s.history * 8 + 8 + scenario.social.inbox * 8 + 8  # recent, inbox (i64) + pointers
    other = 1 + 8  # present (bool), session_length (i64)
    memory = s.memory * (1 + 8 + 4 + 4 + 4 + 4) + 8  # kind, item, tick, rating, valence, imp.
    return persona + tastes + emotion + rings + other + memory + latent_bytes(scenario)


def latent_bytes(scenario: Scenario) -> int:
    """Bytes of one user's or item's latent taste factors (f32; ``persona_model: mf`` only)."""
    pop = scenario.population
    return pop.mf.factors * 4 if pop.persona_model == "mf" else 0


def social_array_bytes(scenario: Scenario) -> int:
    """Bytes of the social graph's CSR arrays (int64 indptr and both directions of each edge)."""
    if not scenario.social.enabled:
        return 0
    n = n_users(scenario)
    return (n + 1) * 8 + 2 * friendship_edges(scenario) * 8


def friendship_edges(scenario: Scenario) -> int:
    """Edges of the social graph (exact for Watts-Strogatz and Barabási-Albert, expected for
    Erdős-Rényi), as `simenv.social.build_graph` draws it."""
    n, cfg = n_users(scenario), scenario.social
    if n < 3:
        return n * (n - 1) // 2
    degree = max(1, min(cfg.degree, n - 1))
    if cfg.graph == "watts_strogatz":
        return n * max(2, degree - degree % 2) // 2
    if cfg.graph == "barabasi_albert":
        m = max(1, degree // 2)
        return m * (n - m)
    return round(n * degree / 2)


def item_array_bytes(scenario: Scenario) -> int:
    """Bytes of the item store's arrays per item slot (`simenv.catalog.ItemStore`)."""
    d = n_topics(scenario)
    # features, unit (f32 rows); quality, prior (f32); creator, publish_tick, exposure_total,
    # consumption_total (i64); available (bool)
    return 2 * d * 4 + 2 * 4 + 4 * 8 + 1 + latent_bytes(scenario)


def item_capacity(n_items: int, n_creators: int, creators: CreatorsConfig, ticks: int) -> int:
    """Item slots a world reserves: the initial catalog and, with creators on, room for every
    publication of the run (the Poisson mean plus six standard deviations)."""
    if not creators.enabled:
        return n_items
    mean = n_creators * creators.publish_rate * ticks
    return n_items + math.ceil(mean + 6 * math.sqrt(mean + 1) + 16)


def n_users(scenario: Scenario) -> int:
    return scenario.population.size


def n_topics(scenario: Scenario) -> int:
    return MOVIELENS_GENRES if scenario.catalog.source == "movielens" else scenario.catalog.n_topics


def initial_items(scenario: Scenario) -> tuple[int, int]:
    """(items, creators) of the initial catalog."""
    if scenario.catalog.source == "movielens":
        return MOVIELENS_ITEMS, MOVIELENS_GENRES
    return scenario.catalog.n_items, scenario.catalog.n_creators


def estimate(scenario: Scenario) -> WorldSize:
    """The memory a world of ``scenario`` needs (bytes by part), from its sizes alone."""
    n = n_users(scenario)
    items, creators = initial_items(scenario)
    capacity = item_capacity(items, creators, scenario.creators, scenario.ticks)
    users = n * (user_array_bytes(scenario) + AGENT_BYTES) + social_array_bytes(scenario)
    item_bytes = capacity * (item_array_bytes(scenario) + ITEM_TEXT_BYTES + AGENT_BYTES)
    active = math.ceil(n * min(1.0, ACTIVE_SHARE * scenario.population.activity_scale))
    build = (
        friendship_edges(scenario) * GRAPH_BUILD_BYTES * scenario.social.enabled
        + items * CATALOG_BUILD_BYTES
        + min(n, example_chunk_rows(items)) * items * EXAMPLE_SCORE_BYTES
    )
    working = max(build, active * TICK_BYTES)
    log = 0
    if scenario.log_interactions:
        slates = active * scenario.ticks * scenario.session.max_steps
        log = 2 * slates * scenario.session.slate_size * LOG_ROW_BYTES
    return WorldSize(users, item_bytes, working, log, n_users=n, n_items=capacity)


def available_memory() -> tuple[int, str] | None:
    """Bytes of memory this process can still use and where that was read, or None.

    ``MemAvailable`` in ``/proc/meminfo`` (Linux), else the physical memory
    (``os.sysconf``); a smaller cgroup limit (containers) wins."""
    found = _meminfo_available() or _physical_memory()
    limit = _cgroup_room()
    if limit is not None and (found is None or limit[0] < found[0]):
        return limit
    return found


def _meminfo_available() -> tuple[int, str] | None:
    try:
        text = Path("/proc/meminfo").read_text()
    except OSError:
        return None
    for line in text.splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024, "MemAvailable in /proc/meminfo"
    return None


def _physical_memory() -> tuple[int, str] | None:
    try:
        pages, size = os.sysconf("SC_PHYS_PAGES"), os.sysconf("SC_PAGE_SIZE")
    except (ValueError, OSError, AttributeError):
        return None
    if pages <= 0 or size <= 0:
        return None
    return pages * size, "physical memory (os.sysconf)"


#: cgroup v2 and v1 files: (limit, current usage)
_CGROUP_FILES = (
    ("/sys/fs/cgroup/memory.max", "/sys/fs/cgroup/memory.current"),
    ("/sys/fs/cgroup/memory/memory.limit_in_bytes", "/sys/fs/cgroup/memory/memory.usage_in_bytes"),
)


def _cgroup_room() -> tuple[int, str] | None:
    for limit_file, usage_file in _CGROUP_FILES:
        try:
            limit_text = Path(limit_file).read_text().strip()
            usage = int(Path(usage_file).read_text().strip())
        except (OSError, ValueError):
            continue
        if not limit_text.isdigit() or int(limit_text) >= 1 << 60:  # "max" or no limit
            continue
        return max(0, int(limit_text) - usage), f"the cgroup limit in {limit_file}"
    return None


def check_fits(scenario: Scenario, available: tuple[int, str] | None = None) -> WorldSize:
    """The estimate of ``scenario``'s world; `WorldTooLargeError` when it is larger than the
    memory available (``available``: bytes and where that was read; default:
    `available_memory`, no check when that is unknown)."""
    size = estimate(scenario)
    room = available if available is not None else available_memory()
    if room is not None and size.total > room[0]:
        raise WorldTooLargeError(
            f"a world of {size.n_users:,} users and {size.n_items:,} items needs about "
            f"{format_bytes(size.total)} of memory (users {format_bytes(size.users)}, items "
            f"{format_bytes(size.items)}, working set {format_bytes(size.working)}, interaction "
            f"log {format_bytes(size.log)}); this machine has {format_bytes(room[0])} available "
            f"({room[1]}): lower population.size, catalog.n_items, ticks or session sizes, or "
            "set log_interactions: false"
        )
    return size


def format_bytes(n: int) -> str:
    """``n`` bytes in binary units, three significant digits (``1.5 GiB``)."""
    value = float(n)
    for unit in ("B", "KiB", "MiB", "GiB", "TiB", "PiB"):
        if value < 1024 or unit == "PiB":
            return f"{value:.0f} {unit}" if unit == "B" else f"{value:.3g} {unit}"
        value /= 1024
    raise AssertionError("unreachable")
