"""Conformance checks of the recloop environments, shipped in the package.

Run them with ``python -m simenv.envs.checks`` (``--help`` lists the options). On every
registered ``recloop/`` gymnasium id (`registered_ids`):

- ``gymnasium.check_env``: `gymnasium.utils.env_checker.check_env` on the unwrapped env (it
  also makes the env in each declared render mode and checks what ``render()`` returns). The
  checker reports many problems (an observation outside its space, a wrong dtype) only as
  warnings, so any warning raised while it runs is a failure here;
- ``sb3.check_env``: `stable_baselines3.common.env_checker.check_env` (stable-baselines3 is the
  optional ``rl`` extra: without it this one check is skipped and says so). SB3's advice
  warnings (observation shapes, Box ranges) do not fail it; they are quoted in the message;
- ``determinism``: two envs reset with the same seed and stepped with the same seeded actions
  give identical observations, rewards, flags and infos; the second env reset with another seed
  gives a different trajectory.

On the PettingZoo ecosystem (``recloop/ecosystem``, `simenv.envs.ecosystem_v0`):
``pettingzoo.parallel_api_test`` and ``pettingzoo.parallel_seed_test`` (a warning they raise,
such as "Live agent was not given observation", is a failure too).

Every check returns a `CheckResult`; nothing raises for a failing env, so the tests assert on
the results and the command prints them. The environments are built small (`GYM_OVERRIDES`,
`ECOSYSTEM_OVERRIDES`), so the whole run takes seconds. Every ``recloop/`` id is built with
``gymnasium.make(id, scenario=..., overrides=[...])``.
"""

from __future__ import annotations

import argparse
import contextlib
import io
import re
import sys
import warnings
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import gymnasium
from gymnasium.utils.env_checker import check_env as gymnasium_check_env
from gymnasium.utils.env_checker import data_equivalence
from pettingzoo import ParallelEnv
from pettingzoo.test import parallel_api_test, parallel_seed_test

from simenv.envs import ecosystem_v0
from simenv.envs.core import SMALL_OVERRIDES

ECOSYSTEM_ID = "recloop/ecosystem"
SCENARIO = "filter_bubble"
#: Scenario overrides of the gymnasium envs under check (a population of 100).
GYM_OVERRIDES: tuple[str, ...] = tuple(SMALL_OVERRIDES)
#: Scenario overrides of the ecosystem under check.
ECOSYSTEM_OVERRIDES: tuple[str, ...] = (
    "population.size=120",
    "catalog.n_items=150",
    "catalog.n_creators=8",
    "ticks=10",
    "creators.enabled=true",
)
STEPS = 25  # steps of each determinism rollout
SEED = 7  # seed of the determinism rollouts (the other one is SEED + 1)
CYCLES = 12  # cycles of the PettingZoo tests

_ANSI = re.compile(r"\x1b\[[0-9;]*m")


@dataclass(frozen=True)
class CheckResult:
    """The outcome of one check on one env; a skipped check is ``ok`` and says why."""

    env_id: str
    check: str
    ok: bool
    message: str = ""
    skipped: bool = False

    @property
    def status(self) -> str:
        if self.skipped:
            return "SKIP"
        return "PASS" if self.ok else "FAIL"

    def line(self) -> str:
        """One report line: status, env id, check and the message."""
        return f"{self.status}  {self.env_id:<34} {self.check:<30} {self.message}".rstrip()


def registered_ids() -> list[str]:
    """Every registered gymnasium id of the ``recloop/`` namespace, sorted.

    ``simenv.envs`` (this module's package) registers its ids when imported.
    """
    return sorted(env_id for env_id in gymnasium.registry if env_id.startswith("recloop/"))


def _one_line(text: str) -> str:
    return " ".join(_ANSI.sub("", text).split())


def _clip(text: str, n: int) -> str:
    return text if len(text) <= n else text[: n - 1] + "…"


def _error(exc: BaseException) -> str:
    return _one_line(f"{type(exc).__name__}: {exc}")


@contextlib.contextmanager
def _quiet() -> Iterator[list[warnings.WarningMessage]]:
    """Record every warning and swallow what the checkers print."""
    with warnings.catch_warnings(record=True) as caught, contextlib.redirect_stdout(io.StringIO()):
        warnings.simplefilter("always")
        yield caught


def _attempt(
    env_id: str, check: str, body: Callable[[], str], *, warnings_fail: bool
) -> CheckResult:
    """Run ``body`` (it returns the message of a pass) into a result.

    An exception fails the check; warnings fail it too when ``warnings_fail``, else they are
    quoted as advice.
    """
    try:
        with _quiet() as caught:
            message = body()
    except Exception as exc:
        return CheckResult(env_id, check, False, _error(exc))
    texts = list(dict.fromkeys(_one_line(str(w.message)).removeprefix("WARN: ") for w in caught))
    if texts and warnings_fail:
        return CheckResult(env_id, check, False, "warned: " + "; ".join(texts))
    if texts:
        advice = "; ".join(_clip(text, 100) for text in texts)
        message = f"{message} (advice: {advice})" if message else f"advice: {advice}"
    return CheckResult(env_id, check, True, message)


def check_gymnasium(env_id: str, env_kwargs: Mapping[str, Any]) -> CheckResult:
    """Gymnasium's ``check_env`` on the unwrapped env; any warning it raises is a failure."""

    def body() -> str:
        env = gymnasium.make(env_id, **env_kwargs)
        gymnasium_check_env(env.unwrapped)
        env.close()
        return ""

    return _attempt(env_id, "gymnasium.check_env", body, warnings_fail=True)


def check_sb3(env_id: str, env_kwargs: Mapping[str, Any]) -> CheckResult:
    """stable-baselines3's ``check_env``; skipped (and says so) when SB3 is not installed."""
    name = "sb3.check_env"
    try:
        from stable_baselines3.common.env_checker import check_env as sb3_check_env
    except ImportError:
        why = "stable-baselines3 is not installed (pip install 'recloop[rl]'): not checked"
        return CheckResult(env_id, name, True, why, skipped=True)

    def body() -> str:
        env = gymnasium.make(env_id, **env_kwargs)
        sb3_check_env(env.unwrapped)
        env.close()
        return ""

    return _attempt(env_id, name, body, warnings_fail=False)


Trajectory = list[tuple[str, Any]]


def _rollout(env: gymnasium.Env[Any, Any], seed: int, actions: Sequence[Any]) -> Trajectory:
    """Labelled outputs of ``reset(seed)`` then ``actions`` (unseeded reset after an episode)."""
    obs, info = env.reset(seed=seed)
    out: Trajectory = [("reset observation", obs), ("reset info", info)]
    for t, action in enumerate(actions):
        obs, reward, terminated, truncated, info = env.step(action)
        out += [
            (f"step {t} observation", obs),
            (f"step {t} reward", reward),
            (f"step {t} terminated", terminated),
            (f"step {t} truncated", truncated),
            (f"step {t} info", info),
        ]
        if terminated or truncated:
            obs, info = env.reset()
            out += [
                (f"reset after step {t} observation", obs),
                (f"reset after step {t} info", info),
            ]
    return out


def _first_difference(a: Trajectory, b: Trajectory) -> str | None:
    """The label of the first output that differs, None when the trajectories are identical."""
    for (label, x), (_, y) in zip(a, b, strict=False):
        if not data_equivalence(x, y, exact=True):
            return label
    return None if len(a) == len(b) else "trajectory length"


def check_determinism(
    env_id: str,
    env_kwargs: Mapping[str, Any],
    *,
    steps: int = STEPS,
    seed: int = SEED,
    seeds_differ: bool = True,
) -> CheckResult:
    """Same seed and seeded actions give the same trajectory; another seed a different one.

    ``seeds_differ=False`` skips the second half, for envs whose dynamics ignore the seed.
    """
    name = "determinism"
    try:
        with _quiet():
            env_a = gymnasium.make(env_id, **env_kwargs)
            env_b = gymnasium.make(env_id, **env_kwargs)
            env_a.action_space.seed(0)
            actions = [env_a.action_space.sample() for _ in range(steps)]
            run_a = _rollout(env_a, seed, actions)
            run_b = _rollout(env_b, seed, actions)
            run_c = _rollout(env_b, seed + 1, actions) if seeds_differ else run_a
    except Exception as exc:
        return CheckResult(env_id, name, False, _error(exc))
    diff = _first_difference(run_a, run_b)
    if diff is not None:
        return CheckResult(env_id, name, False, f"seed {seed} twice: {diff} differs")
    if seeds_differ and _first_difference(run_a, run_c) is None:
        msg = f"seeds {seed} and {seed + 1} gave the same {steps}-step trajectory"
        return CheckResult(env_id, name, False, msg)
    return CheckResult(env_id, name, True, f"{steps} steps, seeds {seed} and {seed + 1}")


def check_gym_env(
    env_id: str,
    env_kwargs: Mapping[str, Any],
    *,
    steps: int = STEPS,
    seeds_differ: bool = True,
) -> list[CheckResult]:
    """All checks of one gymnasium id, built with ``gymnasium.make(env_id, **env_kwargs)``."""
    return [
        check_gymnasium(env_id, env_kwargs),
        check_sb3(env_id, env_kwargs),
        check_determinism(env_id, env_kwargs, steps=steps, seeds_differ=seeds_differ),
    ]


def check_parallel_env(
    env_id: str, make_env: Callable[[], ParallelEnv[Any, Any, Any]], *, cycles: int = CYCLES
) -> list[CheckResult]:
    """PettingZoo's ``parallel_api_test`` and ``parallel_seed_test`` on envs from ``make_env``."""

    def api() -> str:
        parallel_api_test(make_env(), num_cycles=cycles)
        return f"{cycles} cycles"

    def seed() -> str:
        parallel_seed_test(make_env, num_cycles=cycles)
        return f"{cycles} cycles"

    return [
        _attempt(env_id, "pettingzoo.parallel_api_test", api, warnings_fail=True),
        _attempt(env_id, "pettingzoo.parallel_seed_test", seed, warnings_fail=True),
    ]


def ecosystem_factory(
    scenario: str = SCENARIO, overrides: Sequence[str] = ECOSYSTEM_OVERRIDES
) -> Callable[[], ParallelEnv[Any, Any, Any]]:
    """A maker of the ecosystem ParallelEnv for `check_parallel_env`."""
    return lambda: ecosystem_v0.parallel_env(scenario=scenario, overrides=list(overrides))


def run_checks(
    env_ids: Sequence[str] | None = None,
    *,
    scenario: str = SCENARIO,
    extra_overrides: Sequence[str] = (),
    steps: int = STEPS,
    cycles: int = CYCLES,
) -> list[CheckResult]:
    """The checks of ``env_ids`` (default: every ``recloop/`` id and the ecosystem).

    ``extra_overrides`` are applied after the small default sizes of every env.
    """
    ids = list(env_ids) if env_ids is not None else [*registered_ids(), ECOSYSTEM_ID]
    results: list[CheckResult] = []
    for env_id in ids:
        if env_id == ECOSYSTEM_ID:
            make_env = ecosystem_factory(scenario, [*ECOSYSTEM_OVERRIDES, *extra_overrides])
            results += check_parallel_env(env_id, make_env, cycles=cycles)
        else:
            kwargs = {"scenario": scenario, "overrides": [*GYM_OVERRIDES, *extra_overrides]}
            results += check_gym_env(env_id, kwargs, steps=steps)
    return results


def build_parser(known_ids: Sequence[str]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m simenv.envs.checks",
        description=(
            "Check the recloop environments: gymnasium's and stable-baselines3's check_env "
            "and a seeded-determinism check on every registered recloop/ gymnasium id, "
            "PettingZoo's parallel_api_test and parallel_seed_test on the ecosystem. "
            "Prints one line per check (PASS, FAIL or SKIP) and exits 0 when none failed, "
            "1 when any failed (2 on a usage error). The envs are built small (100-120 "
            "users), so a full run takes seconds."
        ),
        epilog="ids checked by default: " + ", ".join(known_ids),
    )
    parser.add_argument(
        "--env",
        action="append",
        metavar="ID",
        help="check only this id (repeatable; default: the ids listed below). Any registered "
        "gymnasium id whose env takes scenario= and overrides= keywords may be given",
    )
    parser.add_argument(
        "--scenario", default=SCENARIO, help=f"scenario the envs are built on (default {SCENARIO})"
    )
    parser.add_argument(
        "--set",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        dest="overrides",
        help="scenario override applied after the small default sizes, e.g. --set "
        "population.size=1000 (repeatable)",
    )
    parser.add_argument(
        "--steps", type=int, default=STEPS, help=f"steps per determinism rollout ({STEPS})"
    )
    parser.add_argument(
        "--cycles", type=int, default=CYCLES, help=f"cycles of the PettingZoo tests ({CYCLES})"
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    default_ids = [*registered_ids(), ECOSYSTEM_ID]
    parser = build_parser(default_ids)
    args = parser.parse_args(argv)
    unknown = [i for i in args.env or () if i != ECOSYSTEM_ID and i not in gymnasium.registry]
    if unknown:
        parser.error(f"unknown env id {unknown[0]!r}; recloop ids: {', '.join(default_ids)}")
    results = run_checks(
        args.env,
        scenario=args.scenario,
        extra_overrides=args.overrides,
        steps=args.steps,
        cycles=args.cycles,
    )
    for result in results:
        print(result.line())
    failed = sum(not r.ok for r in results)
    skipped = sum(r.skipped for r in results)
    passed = len(results) - failed - skipped
    print(f"{len(results)} checks: {passed} passed, {failed} failed, {skipped} skipped")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
