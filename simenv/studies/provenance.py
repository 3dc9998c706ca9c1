"""What a run was made with, beyond its scenario: the recloop version, the data files and the
language model, fingerprinted so that a run folder can refuse to resume against anything else.

`provenance(scenario)` resolves what the scenario leaves implicit (``data_path: null`` means
``$RECLOOP_DATA`` or the default cache; ``decider.llm.model: null`` means the embedded model) and
returns a JSON-ready dict; `differences(a, b)` names what changed between two of them.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from scenarios.schema import Scenario

_CHUNK = 1 << 20


def recloop_version() -> str:
    import simenv

    return str(simenv.__version__)


def file_digest(path: Path) -> str:
    """SHA-256 of a file's bytes."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(_CHUNK):
            h.update(chunk)
    return h.hexdigest()


def data_provenance(scenario: Scenario) -> dict[str, Any] | None:
    """The resolved MovieLens folder and a digest of its files, when the scenario reads it."""
    uses = "movielens" in (scenario.catalog.source, scenario.population.source)
    if not uses:
        return None
    from simenv.data.movielens import REQUIRED_FILES, movielens_folder

    folder = movielens_folder(scenario.catalog.data_path)
    h = hashlib.sha256()
    for name in REQUIRED_FILES:
        h.update(name.encode())
        h.update(file_digest(folder / name).encode())
    return {"dataset": "movielens-100k", "path": str(folder.resolve()), "sha256": h.hexdigest()}


def model_provenance(scenario: Scenario) -> dict[str, Any] | None:
    """The backend and model of LLM personas; for the embedded model, its file's digest."""
    if scenario.decider.kind != "llm":
        return None
    cfg = scenario.decider.llm
    out: dict[str, Any] = {"backend": cfg.backend, "model": cfg.model}
    if cfg.backend in ("transformers", "vllm") and cfg.model is None:
        from simenv.llm.transformers_backend import embedded_gguf_path

        path = embedded_gguf_path()
        out["model"] = f"embedded:{path.name}"
        out["sha256"] = file_digest(path)
    return out


def provenance(scenario: Scenario) -> dict[str, Any]:
    """Everything besides the scenario itself that a run's results depend on."""
    return {
        "recloop": recloop_version(),
        "data": data_provenance(scenario),
        "llm": model_provenance(scenario),
    }


def differences(stored: dict[str, Any], current: dict[str, Any]) -> list[str]:
    """Human-readable lines naming each field that differs, ``what: stored -> current``."""
    out: list[str] = []
    for key in sorted(set(stored) | set(current)):
        a, b = stored.get(key), current.get(key)
        if a == b:
            continue
        if isinstance(a, dict) and isinstance(b, dict):
            out += [f"{key}.{line}" for line in differences(a, b)]
        else:
            out.append(f"{key}: {_short(a)} -> {_short(b)}")
    return out


def _short(value: Any) -> str:
    text = str(value)
    return text if len(text) <= 80 else text[:77] + "..."
