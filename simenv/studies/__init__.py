"""What runs and reads worlds: the run folder, the runner, interviews, calibration, comparison,
plots, training, and the factory that builds deciders and their LLM backends.

`run_folder` alone knows the layout of a run folder; the other modules ask it for paths.
The world itself (`simenv.world` and the modules it orders) never imports from here.

`load` reads a run folder or a sweep folder into tidy pandas frames (`results`).

`make_world` is the one call that builds a `World` with the users its scenario names (LLM
personas or the utility model); it imports the factory only when called, so importing any
module of this package stays light.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from policies.base import Recommender
    from scenarios.schema import Scenario
    from simenv.studies.results import Results
    from simenv.world import World

__all__ = ["load", "make_world"]


def load(path: Path | str, *, interactions: bool = True) -> Results:
    """The results of a run folder or a sweep folder as tidy pandas frames (``metrics``,
    ``configs``, ``summary``, ``interactions``): `simenv.studies.results.load`."""
    from simenv.studies.results import load as load_results

    return load_results(path, interactions=interactions)


def make_world(
    scenario: Scenario | str,
    policy: Recommender | str | None,
    *,
    seed: int = 0,
    run_dir: Path | str | None = None,
) -> World:
    """A `World` of ``scenario`` (a `Scenario`, a built-in name or a YAML path) whose users are
    the decider ``decider.kind`` names: `UtilityDecider` or LLM personas on the backend of
    ``decider.llm`` (`simenv.studies.factory.make_decider`; answers cached in
    ``run_dir/llm_cache.sqlite``, or the user cache without ``run_dir``). ``policy`` is a
    `Recommender`, a registered policy name, or None for an environment's world."""
    import policies
    from scenarios import load
    from simenv.studies.factory import make_decider
    from simenv.world import World

    sc = load(scenario)
    rec = policies.make(policy) if isinstance(policy, str) else policy
    decider = make_decider(sc, None if run_dir is None else Path(run_dir))
    return World(sc, rec, seed=seed, decider=decider)
