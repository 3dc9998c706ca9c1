"""The PettingZoo ecosystem env: API conformance, seeding, batching and known answers."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from pettingzoo.test import api_test, seed_test

from agents.deciders import BaseDecider
from simenv.envs import checks, ecosystem_v0

REPO = Path(__file__).resolve().parents[1]
SMALL = list(checks.ECOSYSTEM_OVERRIDES)


def make(**kwargs: Any) -> ecosystem_v0.EcosystemEnv:
    kwargs.setdefault("scenario", "filter_bubble")
    kwargs.setdefault("overrides", SMALL)
    return ecosystem_v0.parallel_env(**kwargs)


def test_conformance_checks() -> None:
    """PettingZoo's parallel_api_test and parallel_seed_test, as `simenv.envs.checks` runs them."""
    made: list[Any] = []
    make_env = checks.ecosystem_factory(overrides=SMALL)

    def recording() -> Any:
        made.append(make_env())
        return made[-1]

    results = checks.check_parallel_env(checks.ECOSYSTEM_ID, recording, cycles=12)
    assert [r.check for r in results] == [
        "pettingzoo.parallel_api_test",
        "pettingzoo.parallel_seed_test",
    ]
    assert [r.line() for r in results if not r.ok] == []
    assert made[0].world.items.dropped == 0  # max_cycles=12 > ticks=10: nothing dropped


# Platforms and creators observe different things: pettingzoo warns about that, rightly so.
@pytest.mark.filterwarnings("ignore:Agents have different observation space sizes")
@pytest.mark.filterwarnings("ignore:Observations are different shapes")
def test_aec_api_and_seed() -> None:
    api_test(ecosystem_v0.env(scenario="filter_bubble", overrides=SMALL, max_cycles=4), 4)
    seed_test(lambda: ecosystem_v0.env(scenario="filter_bubble", overrides=SMALL), 3)


def test_spaces_agents_and_truncation() -> None:
    env = make(n_platforms=3, n_creator_agents=2, max_cycles=3)
    assert env.possible_agents == [
        "platform_0",
        "platform_1",
        "platform_2",
        "creator_0",
        "creator_1",
    ]
    obs, infos = env.reset(seed=3)
    assert set(obs) == set(infos) == set(env.possible_agents)
    for agent in env.possible_agents:
        assert env.observation_space(agent) is env.observation_space(agent)
        assert env.action_space(agent) is env.action_space(agent)
        assert obs[agent].dtype == np.float32
        assert env.observation_space(agent).contains(obs[agent])
    d = env.n_topics
    assert env.action_space("creator_0").shape == (d + 1,)
    assert env.observation_space("creator_0").shape == (2 + 2 * d,)
    for t in range(3):
        obs, rewards, _, trunc, _ = env.step({a: env.action_space(a).sample() for a in env.agents})
        assert all(env.observation_space(a).contains(o) for a, o in obs.items())
        assert all(isinstance(r, float) for r in rewards.values())
        assert all(v == (t == 2) for v in trunc.values())
    assert env.agents == []
    assert env.step({}) == ({}, {}, {}, {}, {})


def test_default_creator_count_is_capped_by_the_catalog() -> None:
    env = make(n_creator_agents=50)
    assert len(env.creator_agents) == 8


class CountingDecider(BaseDecider):
    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.calls: list[np.ndarray] = []

    def decide(self, ctx: Any) -> Any:
        self.calls.append(ctx.users.copy())
        return self.inner.decide(ctx)


def test_all_visitors_served_in_one_decider_call() -> None:
    env = make(overrides=[*SMALL, "session.max_steps=1"], n_platforms=3)
    env.reset(seed=0)
    counter = CountingDecider(env.world.decider)
    env.world.decider = counter
    for _ in range(4):
        before = len(counter.calls)
        _, _, _, _, infos = env.step({a: env.action_space(a).sample() for a in env.agents})
        visitors = [infos[f"platform_{p}"]["visitors"] for p in range(3)]
        assert len(counter.calls) == before + 1
        users = counter.calls[-1]
        assert users.size == sum(visitors)
        assert np.unique(users).size == users.size
        assert sum(v > 0 for v in visitors) >= 2  # several platforms shared the one call


def test_session_steps_one_call_each() -> None:
    env = make(n_creator_agents=0)
    env.reset(seed=1)
    counter = CountingDecider(env.world.decider)
    env.world.decider = counter
    _, _, _, _, infos = env.step({"platform_0": 0, "platform_1": 1})
    assert 1 <= len(counter.calls) <= env.world.scenario.session.max_steps
    assert counter.calls[0].size == sum(infos[p]["visitors"] for p in env.platforms)
    impressions = sum(infos[p]["impressions"] for p in env.platforms)
    assert impressions == sum(c.size for c in counter.calls)


def test_good_platform_wins_market_share_from_random() -> None:
    overrides = [*SMALL, "population.size=300"]
    late = np.zeros(2)
    for seed in range(3):
        env = make(
            overrides=overrides,
            strategies=["random", "content"],
            n_creator_agents=0,
            max_cycles=15,
            choice_temperature=0.03,
            satisfaction_rate=0.5,
        )
        env.reset(seed=seed)
        for t in range(15):
            _, _, _, _, infos = env.step({"platform_0": 0, "platform_1": 1})
            if t >= 10:
                late += [infos["platform_0"]["visitors"], infos["platform_1"]["visitors"]]
        assert env.choice.satisfaction[:, 1].mean() > env.choice.satisfaction[:, 0].mean()
    assert late[1] / late.sum() > 0.53


def test_creator_actions_set_the_topics_of_their_items() -> None:
    env = make(n_creator_agents=2, max_cycles=5)
    env.reset(seed=0)
    n0 = env.world.items.size
    d = env.n_topics
    a0 = np.zeros(d + 1, dtype=np.float32)
    a0[2] = 1.0
    a1 = np.zeros(d + 1, dtype=np.float32)
    a1[7] = 1.0
    a1[d] = 1.0  # full effort
    rewards_total = np.zeros(2)
    for _ in range(5):
        obs, rewards, _, _, infos = env.step({"creator_0": a0, "creator_1": a1})
        assert infos["creator_0"]["published"] == infos["creator_1"]["published"] == 1
        rewards_total += [rewards["creator_0"], rewards["creator_1"]]
    items = env.world.items
    new = np.arange(n0, items.size)
    for creator, topic in ((0, 2), (1, 7)):
        mine = new[items.creator[new] == creator]
        assert mine.size == 5
        assert (np.argmax(items.features[mine], axis=1) == topic).all()
        assert items.features[mine, topic].mean() > 0.9
    profile = obs["creator_1"][2 : 2 + d]
    assert profile[7] == pytest.approx(1.0)
    # effort raises quality: q + e(1 - q)0.8 >= 0.8 at full effort
    assert (items.quality[new[items.creator[new] == 1]] >= 0.8).all()


def test_reset_without_seed_is_reproducible_from_the_constructor_seed() -> None:
    a, b = make(seed=5, max_cycles=3), make(seed=5, max_cycles=3)
    oa, _ = a.reset()
    ob, _ = b.reset()
    assert all(np.array_equal(oa[k], ob[k]) for k in oa)
    for _ in range(3):
        acts = {"platform_0": 1, "platform_1": 3}
        ra = a.step(acts)[1]
        rb = b.step(acts)[1]
        assert ra == rb


def test_no_supersuit_or_ray_needed() -> None:
    code = (
        "import sys\n"
        "from simenv.envs import ecosystem_v0\n"
        f"env = ecosystem_v0.parallel_env(overrides={SMALL!r}, max_cycles=2)\n"
        "env.reset(seed=0)\n"
        "while env.agents:\n"
        "    env.step({a: env.action_space(a).sample() for a in env.agents})\n"
        "assert not {'supersuit', 'ray'} & set(sys.modules)\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, cwd=REPO)


def _example() -> Any:
    import importlib.util

    path = REPO / "examples" / "rllib_ecosystem.py"
    spec = importlib.util.spec_from_file_location("rllib_ecosystem", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_rllib_example_env_and_missing_ray(capsys: pytest.CaptureFixture[str]) -> None:
    ex = _example()
    cfg = ex.env_config(
        ex.argparse.Namespace(users=80, items=100, platforms=2, creators=1, max_cycles=2)
    )
    env = ex.make_env(cfg)
    env.reset()
    assert ex.policy_mapping_fn("platform_1") == "platform"
    assert ex.policy_mapping_fn("creator_0") == "creator"
    while env.agents:
        env.step({a: env.action_space(a).sample() for a in env.agents})
    try:
        import ray  # noqa: F401
    except ImportError:
        assert ex.main(["--iterations", "1"]) == 1
        assert "RLlib is not installed" in capsys.readouterr().err


def test_supersuit_and_sb3_train_the_platforms(tmp_path):
    import importlib.util
    import sys
    from pathlib import Path

    path = Path(__file__).parents[1] / "examples" / "sb3_ecosystem.py"
    spec = importlib.util.spec_from_file_location("sb3_ecosystem", path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules["sb3_ecosystem"] = module
    spec.loader.exec_module(module)
    small = ["population.size=80", "catalog.n_items=100", "catalog.n_creators=6", "ticks=5"]
    venv = module.make_vec_env("filter_bubble", small, n_platforms=2, seed=0)
    assert venv.num_envs == 2  # one vector slot per platform agent
    venv.close()
    saved = module.train(128, tmp_path, overrides=small)
    assert saved.is_file()


@pytest.mark.slow
def test_rllib_trains_platforms_and_creators(tmp_path):
    """One RLlib PPO iteration on a tiny ecosystem (ray is installed by `make test`)."""
    import os
    import subprocess
    import sys

    try:
        import ray  # noqa: F401
    except ImportError:
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail("ray[rllib] is missing under CI: `make test` installs the ray extra")
        pytest.skip("ray[rllib] is not installed (pip install 'recloop[ray]')")
    script = REPO / "examples" / "rllib_ecosystem.py"
    cmd = [sys.executable, str(script), "--iterations", "1", "--users", "60", "--items", "80",
           "--max-cycles", "3", "--train-batch", "64"]  # fmt: skip
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "OMP_NUM_THREADS": "1"}
    out = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600, cwd=tmp_path)
    assert out.returncode == 0, out.stderr[-2000:]
    assert "iteration 1: episode return" in out.stdout
    assert "creator=" in out.stdout and "platform=" in out.stdout


def test_the_oracle_is_refused_as_a_platform_strategy() -> None:
    with pytest.raises(ValueError, match="strategy 'oracle' is not deployable"):
        make(strategies=["popularity", "oracle"])


@pytest.mark.parametrize("mode", [None, "ansi", "rgb_array"])
def test_renders_the_market(mode: str | None) -> None:
    from simenv.envs.render import IMAGE_SIZE

    env = make(max_cycles=2, render_mode=mode)
    env.reset(seed=0)
    env.step({a: env.action_space(a).sample() for a in env.agents})
    frame = env.render()
    if mode is None:
        assert frame is None
    elif mode == "ansi":
        assert isinstance(frame, str)
        assert frame.startswith("tick 1 of 2") and "platform_1" in frame and "creator_0" in frame
    else:
        assert isinstance(frame, np.ndarray)
        assert frame.shape == (*IMAGE_SIZE, 3) and frame.dtype == np.uint8
    with pytest.raises(ValueError, match="render_mode must be None or one of 'ansi'"):
        make(render_mode="human")
