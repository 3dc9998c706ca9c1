"""The recloop/* gymnasium environments and the batched SB3 VecEnv."""

from __future__ import annotations

import ast
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import gymnasium
import numpy as np
import pytest
from gymnasium import spaces

import simenv
from agents.deciders import BaseDecider
from simenv.envs import checks
from simenv.envs.core import ENV_METRICS, SMALL_OVERRIDES, resolve_duplicates
from simenv.envs.observation import ObservationBuilder

REPO = Path(__file__).resolve().parents[1]
SMALL = list(SMALL_OVERRIDES)
RECLOOP_IDS = checks.registered_ids()


def make(env_id: str, **kwargs: Any) -> Any:
    return gymnasium.make(env_id, overrides=SMALL, **kwargs)


def test_registration_is_idempotent_and_complete() -> None:
    assert set(RECLOOP_IDS) >= set(simenv.envs.ENV_IDS)
    before = dict(gymnasium.registry)
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        simenv.register_envs()
    assert dict(gymnasium.registry) == before


@pytest.mark.parametrize("env_id", RECLOOP_IDS)
def test_conformance_checks(env_id: str) -> None:
    """gymnasium's and SB3's check_env and seeded determinism, as `simenv.envs.checks` runs them."""
    results = checks.run_checks([env_id])
    assert [r.check for r in results] == ["gymnasium.check_env", "sb3.check_env", "determinism"]
    assert [r.line() for r in results if not r.ok] == []


def test_checks_command_passes() -> None:
    cmd = [sys.executable, "-m", "simenv.envs.checks", "--env", "recloop/Session-v0"]
    out = subprocess.run(cmd, capture_output=True, text=True, cwd=REPO, timeout=300)
    assert out.returncode == 0, out.stdout + out.stderr
    assert "PASS  recloop/Session-v0" in out.stdout
    assert "0 failed" in out.stdout


class OutOfSpaceEnv(gymnasium.Env[np.ndarray, np.int64]):
    """A broken env: ``step`` returns an observation outside its observation space."""

    observation_space = spaces.Box(0.0, 1.0, (2,), np.float32)
    action_space = spaces.Discrete(2)

    def __init__(self, scenario: str = "", overrides: list[str] | None = None) -> None:
        del scenario, overrides  # accepted like a recloop env, so the command can build it

    def reset(
        self, *, seed: int | None = None, options: dict[str, Any] | None = None
    ) -> tuple[np.ndarray, dict[str, Any]]:
        super().reset(seed=seed)
        return self.np_random.random(2, dtype=np.float32), {}

    def step(self, action: np.int64) -> tuple[np.ndarray, float, bool, bool, dict[str, Any]]:
        return np.full(2, 5.0, dtype=np.float32), 0.0, False, False, {}


@pytest.fixture
def broken_env_id() -> Iterator[str]:
    env_id = "recloop-test/OutOfSpace-v0"
    gymnasium.register(id=env_id, entry_point=OutOfSpaceEnv)
    yield env_id
    del gymnasium.registry[env_id]


def test_checks_report_a_broken_env(broken_env_id: str, capsys: pytest.CaptureFixture[str]) -> None:
    results = {r.check: r for r in checks.check_gym_env(broken_env_id, {})}
    gym_result = results["gymnasium.check_env"]
    assert not gym_result.ok and not gym_result.skipped
    assert "not within the observation space" in gym_result.message
    assert results["sb3.check_env"].skipped or not results["sb3.check_env"].ok
    assert results["determinism"].ok  # seeded reset, fixed steps: that part is fine
    assert checks.main(["--env", broken_env_id]) == 1
    assert f"FAIL  {broken_env_id}" in capsys.readouterr().out


def test_resets_without_seed_continue_the_world() -> None:
    env = make("recloop/Session-v0")
    env.reset(seed=1)
    world = env.unwrapped.world
    users = []
    for _ in range(60):
        _, info = env.reset()
        users.append(info["user"])
    assert env.unwrapped.world is world
    assert world.tick > 0  # ticks advanced once the day's users were served
    assert len(set(users)) > 10


def test_env_worlds_record_the_cheap_metrics_only() -> None:
    env = make("recloop/Session-v0")
    env.reset(seed=0)
    world = env.unwrapped.world
    while world.tick < 2:
        _, _, terminated, truncated, _ = env.step(env.action_space.sample())
        if terminated or truncated:
            env.reset()
    row = world.metric_rows[-1]
    assert set(ENV_METRICS) <= set(row) and "homogenization" not in row


def test_resolve_duplicates_one_row_equals_the_array_path() -> None:
    rng = np.random.default_rng(0)
    for _ in range(200):
        c = int(rng.integers(1, 9))
        row = rng.integers(0, c, (1, int(rng.integers(1, c + 1))))
        both = resolve_duplicates(np.repeat(row, 2, 0), c)
        np.testing.assert_array_equal(resolve_duplicates(row, c)[0], both[0])


def test_resolve_duplicates() -> None:
    got = resolve_duplicates(np.array([[3, 3, 0, 0, 1], [4, 4, 4, 4, 4]]), 6)
    np.testing.assert_array_equal(got, [[3, 0, 1, 2, 4], [4, 0, 1, 2, 3]])
    ok = np.array([[5, 1, 2]])
    np.testing.assert_array_equal(resolve_duplicates(ok, 6), ok)
    with pytest.raises(ValueError, match="candidates"):
        resolve_duplicates(np.zeros((1, 4), dtype=int), 3)
    with pytest.raises(ValueError, match="indices"):
        resolve_duplicates(np.array([[0, 6]]), 6)


def test_session_env_serves_resolved_candidates() -> None:
    env = make("recloop/Session-v0")
    env.reset(seed=0)
    core = env.unwrapped.core
    cands = core.cands[0].copy()
    k = core.k
    _, _, _, _, info = env.step(np.zeros(k, dtype=np.int64))  # all the same index
    np.testing.assert_array_equal(info["slate"], cands[:k])
    assert len(set(info["slate"].tolist())) == k


def test_observation_builder_reads_only_observable_data() -> None:
    path = Path(simenv.__file__).parent / "envs" / "observation.py"
    tree = ast.parse(path.read_text())
    imported = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            imported |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            own = node.module.startswith(("policies", "simenv"))
            imported.add(node.module if own else node.module.split(".")[0])
    allowed = {"__future__", "typing", "numpy", "gymnasium", "policies.base", "simenv.arrays"}
    allowed.add("simenv.kernels")  # numpy and numba only (the one-user observation kernel)
    assert imported <= allowed


@pytest.mark.parametrize("env_id", ["recloop/Session-v0", "recloop/Exploration-v0"])
def test_observation_ignores_persona_state(env_id: str) -> None:
    env = make(env_id)
    env.reset(seed=3)
    for _ in range(2):
        env.step(env.action_space.sample())
    core = env.unwrapped.core
    world = env.unwrapped.world
    gen = world.rngs["policy"]  # the retriever breaks ties at random: replay the same draws
    state = gen.bit_generator.state
    before = core.observe()
    gen.bit_generator.state = state
    u = int(core.users[0])
    world.users.taste[u] = np.roll(world.users.taste[u], 3)
    world.users.emotion.satisfaction[u] = -1.0
    world.users.emotion.boredom[u] = 1.0
    world.users.persona.curiosity[u] = 0.0
    after = core.observe()
    assert before.keys() == after.keys()
    for key in before:
        np.testing.assert_array_equal(before[key], after[key])


def test_observation_builder_tracks_feedback() -> None:
    from policies.base import Feedback, PlatformSpec, RecommendRequest

    spec = PlatformSpec(n_users=3, n_items=4, n_features=2, k=2, history=3)
    b = ObservationBuilder(spec, max_steps=4)
    feats = np.array([[1, 0], [0, 1], [1, 0], [1, 1]], dtype=np.float32)
    req = RecommendRequest(
        tick=2,
        users=np.array([0, 1]),
        k=2,
        item_features=feats,
        available=np.ones(4, dtype=bool),
        item_age=np.zeros(4, dtype=np.int32),
        recent=np.array([[0, 2, -1], [0, 1, -1]]),
    )
    obs = b.observe(req, 0)
    assert b.space().contains({k: v[0] for k, v in obs.items()})
    np.testing.assert_allclose(obs["user"][:, 5], [1, 1])  # never seen
    np.testing.assert_allclose(obs["user"][:, 8], [1, 0])  # repetition: identical vs orthogonal
    b.update(
        Feedback(
            tick=2,
            users=np.array([0, 1]),
            slates=np.array([[1, 3], [2, 3]]),
            chosen_pos=np.array([1, -1]),
            chosen_item=np.array([3, -1]),
            rating=np.array([5.0, np.nan], dtype=np.float32),
            ended_session=np.array([False, True]),
        )
    )
    obs = b.observe(req, np.array([1, 1]))
    np.testing.assert_allclose(obs["user"][:, :4], [[1, 1, 0.1, 0.25], [0, 0, 0, 0.25]])
    np.testing.assert_allclose(obs["user"][:, 4:6], [[0, 0], [0, 0]])  # seen this tick
    np.testing.assert_allclose(b.item_popularity(np.array([3, 0])), [1, 0])


def test_exploration_share_replaces_slots_with_novel_items() -> None:
    env = make("recloop/Exploration-v0")
    env.reset(seed=2)
    core = env.unwrapped.core
    for level in range(len(core.explore_levels)):
        _, _, term, trunc, info = env.step(level)
        assert info["explore_share"] == core.explore_levels[level]
        assert {"clicked", "rating", "explore_share"} <= info.keys()
        if term or trunc:
            env.reset()


def test_explore_draws_distinct_novel_items() -> None:
    env = make("recloop/Exploration-v0")
    env.reset(seed=4)
    for _ in range(3):  # some history first
        env.step(0)
    core = env.unwrapped.core
    request = core.world.request(core.users)
    base = np.asarray(core.base.recommend(request))
    slates = base.copy()
    core.explore(request, slates, np.array([0.0]))
    np.testing.assert_array_equal(slates, base)
    core.explore(request, slates, np.array([1.0]))
    row = slates[0]
    assert len(set(row.tolist())) == row.size
    assert request.available[row].all()
    assert not set(row.tolist()) & (set(base[0].tolist()) | set(request.recent[0].tolist()))


class CountingDecider(BaseDecider):
    def __init__(self, inner: Any) -> None:
        self.inner, self.name, self.calls = inner, inner.name, 0
        self.sizes: list[int] = []

    def decide(self, ctx: Any) -> Any:
        self.calls += 1
        self.sizes.append(int(ctx.users.size))
        return self.inner.decide(ctx)


@pytest.mark.parametrize("mode", ["session", "exploration"])
def test_vecenv_one_decider_call_per_step(mode: Literal["session", "exploration"]) -> None:
    from simenv.envs.vector import BatchedSessionVecEnv

    n = 8
    venv = BatchedSessionVecEnv("filter_bubble", n, SMALL, mode=mode, seed=0)
    venv.reset()
    counter = CountingDecider(venv.world.decider)
    venv.world.decider = counter
    finished = 0
    for step in range(30):
        actions = np.stack([venv.action_space.sample() for _ in range(n)])
        _, rewards, dones, infos = venv.step(actions)
        assert counter.calls == step + 1
        users = venv.get_attr("user")
        assert len(set(users)) == n  # distinct users in the N sessions
        assert rewards.shape == (n,) and dones.shape == (n,)
        for i in np.flatnonzero(dones):
            finished += 1
            assert venv.observation_space.contains(infos[i]["terminal_observation"])
    assert counter.sizes == [n] * 30
    assert finished > 0
    assert venv.env_is_wrapped(gymnasium.Wrapper) == [False] * n
    assert venv.get_attr("mode", [0, 1]) == [mode, mode]
    venv.close()


def test_vecenv_seed_reproducible() -> None:
    from simenv.envs.vector import BatchedSessionVecEnv

    def run(seed: int) -> list[np.ndarray]:
        venv = BatchedSessionVecEnv("filter_bubble", 4, SMALL, mode="session")
        venv.seed(seed)
        first: Any = venv.reset()
        out = [first["user"]]
        rng = np.random.default_rng(0)
        for _ in range(10):
            obs: Any
            obs, rew, _, _ = venv.step(rng.integers(0, venv.core.n_candidates, (4, venv.core.k)))
            out += [obs["user"], rew]
        return out

    a, b, c = run(5), run(5), run(6)
    assert all(np.array_equal(x, y) for x, y in zip(a, b, strict=True))
    assert not all(np.array_equal(x, y) for x, y in zip(a, c, strict=True))


def test_vecenv_trains_with_ppo() -> None:
    from stable_baselines3 import PPO

    from simenv.envs.vector import BatchedSessionVecEnv

    venv = BatchedSessionVecEnv("filter_bubble", 4, SMALL, mode="session", seed=0)
    model = PPO("MultiInputPolicy", venv, n_steps=64, batch_size=64, n_epochs=2, seed=0)
    model.learn(256)
    assert model.num_timesteps == 256


def test_gym_vector_env() -> None:
    from simenv.envs.vector import make_gym_vector_env

    vec = make_gym_vector_env("recloop/Exploration-v0", 2, overrides=SMALL)
    obs, _ = vec.reset(seed=0)
    assert obs["user"].shape == (2, 9)
    obs, rew, *_ = vec.step(np.array([0, 4]))
    assert rew.shape == (2,)
    vec.close()


def test_reward_terms_validated() -> None:
    with pytest.raises(ValueError, match="unknown reward terms"):
        make("recloop/Session-v0", reward={"clicks": 1.0})
    env = make("recloop/Session-v0", reward={"click": 0, "rating": 0, "diversity": 1.0})
    env.reset(seed=0)
    _, reward, *_ = env.step(env.action_space.sample())
    assert 0.0 < float(reward) <= 2.0  # intra-list diversity of the slate


@pytest.mark.parametrize("env_id", ["recloop/Session-v0", "recloop/Exploration-v0"])
def test_the_oracle_is_refused_as_a_retriever(env_id: str) -> None:
    """An environment's world hands out no true utilities, so it cannot run the oracle."""
    with pytest.raises(ValueError, match="retriever 'oracle' is not deployable"):
        make(env_id, retriever="oracle")
    import policies

    with pytest.raises(ValueError, match="explore's base 'oracle' is not deployable"):
        policies.make("explore", base="oracle")


# --- rendering -----------------------------------------------------------------------------


@pytest.mark.parametrize("env_id", RECLOOP_IDS)
def test_render_ansi_shows_slate_answer_and_reward(env_id: str) -> None:
    env = make(env_id, render_mode="ansi")
    _, info = env.reset(seed=0)
    assert env.metadata["render_modes"] == ["ansi", "rgb_array"] and env.metadata["render_fps"]
    assert "no slate served yet" in env.render()
    _, reward, terminated, _, info = env.step(env.action_space.sample())
    text = env.render()
    assert isinstance(text, str) and f"user {info['user']}" in text
    assert f"reward {reward:+.3f}" in text
    for item in info["slate"]:
        assert f"item {int(item):>6}" in text
    answer = f"chose item {info['item']}" if info["clicked"] else "nothing chosen"
    assert answer in text
    assert ("session over" in text) == bool(terminated)


@pytest.mark.parametrize("env_id", RECLOOP_IDS)
def test_render_rgb_array_is_a_picture(env_id: str) -> None:
    from simenv.envs.render import IMAGE_SIZE

    env = make(env_id, render_mode="rgb_array")
    env.reset(seed=0)
    blank = env.render()
    env.step(env.action_space.sample())
    frame = env.render()
    assert isinstance(frame, np.ndarray) and frame.dtype == np.uint8
    assert frame.shape == blank.shape == (*IMAGE_SIZE, 3)
    assert not np.array_equal(frame, blank)  # the served slate is drawn
    assert len(np.unique(frame.reshape(-1, 3), axis=0)) > 8  # topic colours, text, bars


def test_rendering_does_nothing_unless_asked() -> None:
    code = (
        "import sys, gymnasium, simenv\n"
        "for mode in (None, 'ansi', 'rgb_array'):\n"
        f"    env = gymnasium.make('recloop/Session-v0', overrides={SMALL!r}, render_mode=mode)\n"
        "    env.reset(seed=0)\n"
        "    for _ in range(3):\n"
        "        env.step(env.action_space.sample())\n"
        "    assert (env.unwrapped.traces is None) == (mode is None), mode\n"
        "    assert 'matplotlib' not in sys.modules, mode\n"
        "    if mode is None:\n"
        "        assert env.render() is None\n"
        "env.render()\n"
        "assert 'matplotlib' in sys.modules\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert out.returncode == 0, out.stderr


def test_unknown_render_mode_is_refused() -> None:
    from simenv.envs.session import SessionEnv

    with pytest.raises(ValueError, match="render_mode must be None or one of 'ansi', 'rgb_array'"):
        SessionEnv(overrides=SMALL, render_mode="rgb")


@pytest.mark.parametrize("env_id", RECLOOP_IDS)
def test_sb3_make_vec_env_works_on_every_id(env_id: str) -> None:
    """SB3's make_vec_env asks for render_mode="rgb_array" (the first line an SB3 user types)."""
    from stable_baselines3.common.env_util import make_vec_env

    from simenv.envs.render import IMAGE_SIZE

    venv = make_vec_env(env_id, n_envs=2, seed=0, env_kwargs={"overrides": SMALL})
    assert venv.render_mode == "rgb_array"
    venv.reset()
    _, rewards, _, _ = venv.step(np.stack([venv.action_space.sample() for _ in range(2)]))
    assert rewards.shape == (2,)
    images = venv.get_images()
    assert [im.shape for im in images] == [(*IMAGE_SIZE, 3)] * 2
    venv.close()


# --- gymnasium.make_vec: the batched env -----------------------------------------------------


@pytest.mark.parametrize("env_id", RECLOOP_IDS)
def test_make_vec_returns_the_batched_env(env_id: str) -> None:
    from simenv.envs.batch import SessionVectorEnv

    n = 4
    vec = gymnasium.make_vec(
        env_id, num_envs=n, vectorization_mode="vector_entry_point", overrides=SMALL
    )
    assert isinstance(vec, SessionVectorEnv) and vec.num_envs == n
    assert isinstance(gymnasium.make_vec(env_id, num_envs=2, overrides=SMALL), SessionVectorEnv)
    sync = gymnasium.make_vec(env_id, num_envs=2, vectorization_mode="sync", overrides=SMALL)
    assert isinstance(sync, gymnasium.vector.SyncVectorEnv)  # N worlds, when asked for
    single = make(env_id)
    assert vec.single_observation_space == single.observation_space
    assert vec.single_action_space == single.action_space
    obs, infos = vec.reset(seed=0)
    assert vec.observation_space.contains(obs) and infos["user"].shape == (n,)
    counter = CountingDecider(vec.world.decider)
    vec.world.decider = counter
    vec.action_space.seed(0)
    finished = 0
    for step in range(25):
        obs, rewards, terminated, truncated, infos = vec.step(vec.action_space.sample())
        assert counter.calls == step + 1 and counter.sizes[-1] == n  # one decider call a step
        assert vec.observation_space.contains(obs) and rewards.shape == (n,)
        done = terminated | truncated
        if done.any():
            np.testing.assert_array_equal(infos["_final_obs"], done)
            for i in np.flatnonzero(done):
                assert vec.single_observation_space.contains(infos["final_obs"][i])
                assert infos["final_info"]["_clicked"][i]
        finished += int(done.sum())
    assert finished > 0
    vec.close()


def test_gymnasium_and_sb3_vector_envs_step_alike() -> None:
    """Both vector APIs run the same machinery: same seed and actions, same trajectory."""
    from simenv.envs.vector import BatchedSessionVecEnv

    vec = gymnasium.make_vec("recloop/Session-v0", num_envs=4, overrides=SMALL)
    sb3 = BatchedSessionVecEnv("filter_bubble", 4, SMALL, mode="session", seed=5)
    obs_a, _ = vec.reset(seed=5)
    obs_b: Any = sb3.reset()
    rng = np.random.default_rng(0)
    core = vec.unwrapped.core
    for _ in range(15):
        for key in obs_a:
            np.testing.assert_array_equal(obs_a[key], obs_b[key])
        actions = rng.integers(0, core.n_candidates, (4, core.k))
        obs_a, rew_a, term, trunc, _ = vec.step(actions)
        obs_b, rew_b, dones, _ = sb3.step(actions)
        np.testing.assert_array_equal(rew_a, rew_b)
        np.testing.assert_array_equal(term | trunc, dones)


def test_vector_envs_render_one_frame_per_session() -> None:
    from simenv.envs.render import IMAGE_SIZE
    from simenv.envs.vector import BatchedSessionVecEnv

    vec = gymnasium.make_vec("recloop/Exploration-v0", num_envs=3, overrides=SMALL,
                             render_mode="ansi")  # fmt: skip
    vec.reset(seed=0)
    vec.step(np.zeros(3, dtype=np.int64))
    frames = vec.render()
    assert len(frames) == 3
    assert all("exploration share 0.00" in f or "no slate served yet" in f for f in frames)
    quiet = gymnasium.make_vec("recloop/Exploration-v0", num_envs=2, overrides=SMALL)
    quiet.reset(seed=0)
    assert quiet.render() is None
    sb3 = BatchedSessionVecEnv("filter_bubble", 2, SMALL, mode="session", seed=0,
                               render_mode="rgb_array")  # fmt: skip
    sb3.reset()
    sb3.step(np.zeros((2, sb3.core.k), dtype=np.int64))
    assert [im.shape for im in sb3.get_images()] == [(*IMAGE_SIZE, 3)] * 2
    tiled = sb3.render()
    assert tiled is not None and tiled.dtype == np.uint8 and tiled.shape[2] == 3
