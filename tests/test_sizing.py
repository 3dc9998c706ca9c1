"""The memory estimate of a world (simenv/sizing.py): exact array bytes, an upper estimate of
what a run allocates, and a clear refusal before allocating a world that cannot fit."""

from __future__ import annotations

import dataclasses
import tracemalloc

import numpy as np
import pytest

import policies
from scenarios import load
from simenv import sizing
from simenv.sizing import WorldTooLargeError, check_fits, estimate, format_bytes
from simenv.world import World


def array_bytes(obj: object, seen: set[int] | None = None) -> int:
    """Bytes of every numpy array reachable from ``obj``'s attributes (dataclasses and plain
    objects, recursively; each array once)."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return 0
    seen.add(id(obj))
    if isinstance(obj, np.ndarray):
        return int(obj.nbytes)
    if dataclasses.is_dataclass(obj) and not isinstance(obj, type):
        values = [getattr(obj, f.name) for f in dataclasses.fields(obj)]
    elif hasattr(obj, "__dict__"):
        values = list(vars(obj).values())
    else:
        return 0
    return sum(array_bytes(v, seen) for v in values)


SCENARIOS = {
    "filter_bubble": ["population.size=300", "catalog.n_items=400"],
    "cold_start": ["population.size=200", "ticks=5"],  # creators publish: reserved item slots
    "barabasi": ["population.size=150", "social.graph=barabasi_albert", "social.degree=8"],
    "no_social": ["population.size=120", "social.enabled=false", "session.memory=7"],
    "topics": ["population.size=100", "catalog.n_topics=30", "session.history=3"],
}


@pytest.mark.parametrize("name", list(SCENARIOS))
def test_the_array_bytes_are_those_the_world_allocates(name):
    base = "filter_bubble" if name not in {"cold_start"} else name
    scenario = load(base, SCENARIOS[name])
    world = World(scenario, policies.make("popularity"), seed=0)
    size = estimate(scenario)
    assert array_bytes(world.users) == world.n_users * sizing.user_array_bytes(scenario)
    social = 0 if world.social is None else array_bytes(world.social)
    if scenario.social.graph != "erdos_renyi":
        assert social == sizing.social_array_bytes(scenario)
    assert world.items.capacity == size.n_items
    assert array_bytes(world.items) == size.n_items * sizing.item_array_bytes(scenario)


def test_the_estimate_bounds_what_a_run_allocates():
    """tracemalloc sees numpy's allocations and Python objects: building the world and
    running ticks (log on, every user active) stays under the estimate, and the estimate is
    not wildly above it."""
    scenario = load(
        "filter_bubble",
        [
            "population.size=3000",
            "catalog.n_items=2000",
            "ticks=3",
            "population.activity_scale=100",
        ],
    )
    tracemalloc.start()
    try:
        world = World(scenario, policies.make("mf"), seed=0)
        for _ in range(scenario.ticks):
            world.step()
        world.interactions_frame()
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    total = estimate(scenario).total
    assert peak <= total <= 4 * peak, (format_bytes(peak), format_bytes(total))


def test_a_world_that_cannot_fit_is_refused_with_the_estimate_and_the_room():
    scenario = load("filter_bubble", ["population.size=1000000"])
    with pytest.raises(WorldTooLargeError) as err:
        check_fits(scenario, available=(64 * 2**20, "the test's limit"))
    text = str(err.value)
    assert "1,000,000 users and 1,000 items needs about" in text
    assert "this machine has 64 MiB available (the test's limit)" in text
    assert "\n" not in text and isinstance(err.value, ValueError)
    small = load("filter_bubble", ["population.size=100"])
    assert check_fits(small, available=(64 * 2**20, "the test's limit")).total < 64 * 2**20


@pytest.mark.parametrize(
    "override",
    ["population.size=1000000000000", "catalog.n_items=10000000000", "ticks=1000000000000"],
)
def test_world_refuses_before_allocating(override):
    """The same error for Python users: World checks before it builds anything."""
    with pytest.raises(WorldTooLargeError, match="needs about"):
        World(load("filter_bubble", [override]), policies.make("random"))


def test_the_parts_grow_with_what_they_hold():
    small = estimate(load("filter_bubble", ["population.size=1000"]))
    more_users = estimate(load("filter_bubble", ["population.size=2000"]))
    assert more_users.users > 1.9 * small.users and more_users.items == small.items
    no_log = estimate(load("filter_bubble", ["population.size=1000", "log_interactions=false"]))
    assert no_log.log == 0 and small.log > 0
    longer = estimate(load("filter_bubble", ["population.size=1000", "ticks=60"]))
    assert longer.log == 2 * small.log  # filter_bubble has 30 ticks


def test_available_memory_is_read_from_the_machine():
    found = sizing.available_memory()
    assert found is not None and found[0] > 0 and found[1]


def test_format_bytes():
    assert format_bytes(512) == "512 B"
    assert format_bytes(1536) == "1.5 KiB"
    assert format_bytes(3 * 2**30) == "3 GiB"
    assert format_bytes(2**60) == "1.02e+03 PiB"
