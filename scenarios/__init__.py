"""Built-in scenarios (YAML files beside this module) and the loader for any scenario file.

    >>> from scenarios import load
    >>> sc = load("filter_bubble", overrides=["ticks=5", "population.size=100"])

Errors are `ScenarioError` with one line naming the file, the field and what was expected.
"""

from __future__ import annotations

import textwrap
from importlib import resources
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ValidationError

from scenarios.schema import PolicyConfig, Scenario

__all__ = [
    "PolicyConfig",
    "Scenario",
    "ScenarioError",
    "available",
    "commented_yaml",
    "load",
    "resolve_path",
]


class ScenarioError(ValueError):
    """A scenario that cannot be found, parsed or validated."""


def available() -> list[str]:
    """Names of the built-in scenarios."""
    root = resources.files(__name__)
    return sorted(p.name[: -len(".yaml")] for p in root.iterdir() if p.name.endswith(".yaml"))


def resolve_path(name_or_path: str | Path) -> Path:
    """A built-in scenario name or a path to a YAML file."""
    path = Path(name_or_path)
    if path.suffix in {".yaml", ".yml"} or path.exists():
        if not path.is_file():
            raise ScenarioError(f"scenario file not found: {path}")
        return path
    builtin = Path(str(resources.files(__name__).joinpath(f"{name_or_path}.yaml")))
    if not builtin.is_file():
        raise ScenarioError(
            f"unknown scenario '{name_or_path}'; built-in scenarios: {', '.join(available())} "
            "(or pass a path to a .yaml file)"
        )
    return builtin


def load(scenario: str | Path | Scenario, overrides: list[str] | None = None) -> Scenario:
    """A scenario by built-in name, YAML path or object, with ``dotted.key=value`` overrides
    applied and validated (the one scenario loader: the CLI, the runner, run folders and the
    environments all come through here)."""
    if isinstance(scenario, Scenario):
        if not overrides:
            return scenario
        raw = scenario.model_dump()
        source = f"<scenario {scenario.name}>"
    else:
        path = resolve_path(scenario)
        raw, source = _read(path), str(path)
    for item in overrides or []:
        apply_override(raw, item)
    return validate(raw, source=source)


def _read(path: Path) -> dict[str, Any]:
    try:
        raw = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as exc:
        raise ScenarioError(f"{path}: not valid YAML: {_one_line(str(exc))}") from exc
    if not isinstance(raw, dict):
        raise ScenarioError(f"{path}: expected a mapping of fields, got {type(raw).__name__}")
    return raw


def validate(raw: dict[str, Any], source: str = "<scenario>") -> Scenario:
    try:
        return Scenario.model_validate(raw)
    except ValidationError as exc:
        raise ScenarioError(f"{source}: {format_validation_error(exc)}") from exc


def format_validation_error(exc: ValidationError) -> str:
    parts = []
    for err in exc.errors():
        loc = ".".join(str(x) for x in err["loc"]) or "(top level)"
        msg = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            msg = "unknown field"
        got = err.get("input")
        quiet = err["type"] in {"missing", "extra_forbidden"} or not err["loc"]
        shown = "" if quiet else f" (got {got!r:.60})"
        parts.append(f"field '{loc}': {msg}{shown}")
    return "; ".join(parts)


def apply_override(raw: dict[str, Any], item: str) -> None:
    """Set ``a.b.c=value`` in ``raw``; the value is parsed as YAML (numbers, lists, true...)."""
    key, sep, text = item.partition("=")
    if not sep or not key.strip():
        raise ScenarioError(f"--set expects dotted.key=value, got '{item}'")
    try:
        value = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ScenarioError(f"--set {key}: value is not valid YAML: {text!r}") from exc
    path = key.strip().split(".")
    if not all(path):
        raise ScenarioError(f"--set {key.strip()}: empty name in the dotted key")
    node: Any = raw
    for i, part in enumerate(path[:-1]):
        node = _child(node, part, path[: i + 1], next_is_index=path[i + 1].isdigit())
    _container(node, path)
    last = path[-1]
    if isinstance(node, list):
        node[_index(node, last, path)] = value
    else:
        node[last] = value


def _child(node: Any, part: str, trail: list[str], *, next_is_index: bool) -> Any:
    _container(node, trail)
    if isinstance(node, list):
        return node[_index(node, part, trail)]
    if node.get(part) is None:
        node[part] = [] if next_is_index else {}
    return node[part]


def _container(node: Any, trail: list[str]) -> None:
    """``node``, reached by ``trail[:-1]``, must be a mapping or a list to set ``trail[-1]``."""
    if isinstance(node, dict | list):
        return
    parent = ".".join(trail[:-1])
    raise ScenarioError(
        f"--set {'.'.join(trail)}: '{parent}' is a value ({type(node).__name__} {node!r:.40}), "
        f"not a mapping or a list; set '{parent}' itself (e.g. --set {parent}=...)"
    )


def _index(node: list[Any], part: str, trail: list[str]) -> int:
    if not part.isdigit():
        raise ScenarioError(
            f"--set {'.'.join(trail)}: '{'.'.join(trail[:-1])}' is a list; expected an index "
            f"0..{len(node) - 1}, got '{part}'"
        )
    if int(part) >= len(node):
        raise ScenarioError(
            f"--set {'.'.join(trail)}: index '{part}' is out of range (list of {len(node)})"
        )
    return int(part)


def _one_line(text: str) -> str:
    return " ".join(text.split())


def commented_yaml(model: BaseModel, width: int = 96) -> str:
    """``model`` as YAML with each field's schema description as a comment above it (what
    `recloop show` prints); it loads back to the same values as `config.yaml`."""
    return "\n".join(_commented_lines(model, "", width)) + "\n"


def _commented_lines(model: BaseModel, pad: str, width: int) -> list[str]:
    data = model.model_dump(mode="json")
    lines: list[str] = []
    for name, info in type(model).model_fields.items():
        value = getattr(model, name)
        about = info.description or _first_line(type(value).__doc__)
        if about:
            text = textwrap.wrap(about, max(40, width - len(pad) - 2))
            lines += [f"{pad}# {line}" for line in text]
        if isinstance(value, BaseModel) and type(value).model_fields:
            lines.append(f"{pad}{name}:")
            lines += _commented_lines(value, pad + "  ", width)
            continue
        dumped = yaml.safe_dump(
            {name: data[name]}, sort_keys=False, allow_unicode=True, width=width
        )
        lines += [pad + line for line in dumped.rstrip("\n").splitlines()]
    return lines


def _first_line(doc: str | None) -> str:
    """The first sentence of a docstring (a nested model's description when its field has
    none)."""
    text = " ".join((doc or "").split())
    return text.split(". ")[0].rstrip(".") if text else ""
