"""A small sweep folder built by hand for the tests of `load` and `recloop report`: one
`run_scenario` per setting under ``settings/<id>/`` and a ``sweep.json`` in the shared layout
(what `recloop sweep` writes)."""

from __future__ import annotations

import itertools
from pathlib import Path
from typing import Any

from scenarios import load as load_scenario
from scenarios import validate
from scenarios.schema import PolicyConfig
from simenv.studies.run_folder import write_json
from simenv.studies.runner import run_scenario

TINY = ["ticks=3", "population.size=40", "catalog.n_items=80"]


def make_sweep(
    root: Path,
    grid: dict[str, list[Any]],
    seeds: list[int],
    scenario: str = "filter_bubble",
    common: list[str] | None = None,
) -> Path:
    """A finished sweep folder at ``root``: every combination of ``grid`` (``policy``: the
    scenario's policies replaced by that one) times ``seeds``."""
    common = TINY if common is None else common
    settings = []
    for i, values in enumerate(itertools.product(*grid.values())):
        overrides = dict(zip(grid, values, strict=True))
        sid = f"s{i:03d}"
        folder = f"settings/{sid}"
        sets = [*common, f"seeds={seeds}"]
        sets += [f"{k}={v}" for k, v in overrides.items() if k != "policy"]
        sc = load_scenario(scenario, sets)
        if "policy" in overrides:
            raw = sc.model_dump()
            raw["policies"] = [PolicyConfig(name=overrides["policy"]).model_dump()]
            sc = validate(raw, source=scenario)
        run_scenario(sc, root / folder, progress=False)
        settings.append({"id": sid, "overrides": overrides, "folder": folder})
    write_json(
        root / "sweep.json",
        {
            "kind": "recloop-sweep",
            "version": 1,
            "scenario": scenario,
            "set": common,
            "grid": grid,
            "seeds": seeds,
            "settings": settings,
            "recloop_version": "test",
        },
    )
    return root
