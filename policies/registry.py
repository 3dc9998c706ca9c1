"""The policy registry: ``make(name, **kwargs)`` builds any registered recommender.

Registering a policy::

    @register("my_policy")
    class MyPolicy(SlatePolicy):
        \"\"\"What it observes, what it learns, how it ranks.\"\"\"

        def __init__(self, alpha: float = 1.0) -> None: ...

A policy whose module is heavy to import (an LLM re-ranker, a trained RL agent) is registered
lazily by entry point, as Gymnasium does, so ``import policies`` stays light::

    register("llm_rerank", entry_point="policies.llm:LLMReranker")

``make`` checks keyword arguments against the constructor's signature and reports unknown or
missing ones by name, with the list of parameters the policy takes.
"""

from __future__ import annotations

import difflib
import importlib
import inspect
from collections.abc import Callable
from typing import Any, TypeVar

from policies.base import Recommender

T = TypeVar("T", bound=type)


class UnknownPolicyError(ValueError):
    """Raised when a policy name is not in the registry."""


_REGISTRY: dict[str, type | str] = {}


def register(
    name: str, entry_point: str | None = None, *, overwrite: bool = False
) -> Callable[[T], T]:
    """Register a policy class under ``name``.

    Used as a class decorator (``@register("ucb")``), which also sets the class attribute
    ``name``; or called with ``entry_point="module:Class"`` to register lazily (the module is
    imported by the first ``make``). Registering a taken name raises ``ValueError`` unless
    ``overwrite`` is true. The decorator returns the class unchanged otherwise.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"policy name must be a non-empty string, got {name!r}")
    if name in _REGISTRY and not overwrite:
        raise ValueError(f"policy {name!r} is already registered")

    if entry_point is not None:
        if ":" not in entry_point:
            raise ValueError(f"entry_point must look like 'module:Class', got {entry_point!r}")
        _REGISTRY[name] = entry_point

    def decorator(cls: T) -> T:
        if not isinstance(cls, type):
            raise TypeError(f"@register({name!r}) must decorate a class, got {cls!r}")
        cls.name = name  # type: ignore[attr-defined]
        _REGISTRY[name] = cls
        return cls

    return decorator


def available() -> list[str]:
    """Names of all registered policies, sorted."""
    return sorted(_REGISTRY)


def get_class(name: str) -> type:
    """The class registered as ``name`` (importing its module if it was registered lazily)."""
    try:
        target = _REGISTRY[name]
    except KeyError:
        hint = difflib.get_close_matches(str(name), available(), n=1)
        did_you_mean = f" (did you mean {hint[0]!r}?)" if hint else ""
        raise UnknownPolicyError(
            f"unknown policy {name!r}{did_you_mean}; available policies: {', '.join(available())}"
        ) from None
    if isinstance(target, str):
        module_name, _, attr = target.partition(":")
        try:
            cls = getattr(importlib.import_module(module_name), attr)
        except (ImportError, AttributeError) as exc:
            raise ImportError(
                f"policy {name!r}: cannot load entry point {target!r}: {exc}"
            ) from exc
        _REGISTRY[name] = cls
        return cls  # type: ignore[no-any-return]
    return target


def parameters(name: str) -> dict[str, Any]:
    """The constructor parameters of policy ``name`` and their defaults (``inspect.Parameter.
    empty`` for required ones)."""
    sig = inspect.signature(get_class(name))
    return {
        p.name: p.default
        for p in sig.parameters.values()
        if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)
    }


def make(name: str, **kwargs: Any) -> Recommender:
    """Build policy ``name`` with the given hyper-parameters.

    Raises :class:`UnknownPolicyError` (a ``ValueError``) for an unknown name and
    ``ValueError`` naming the offending keyword for unknown or missing parameters, or naming
    the policy and its parameters when the constructor refuses their values. The policy
    still needs ``reset(spec, rng)`` before its first ``recommend``.
    """
    cls = get_class(name)
    sig = inspect.signature(cls)
    params = sig.parameters
    takes_any = any(p.kind is p.VAR_KEYWORD for p in params.values())
    known = [p.name for p in params.values() if p.kind not in (p.VAR_POSITIONAL, p.VAR_KEYWORD)]
    listing = ", ".join(known) if known else "(none)"
    if not takes_any:
        unknown = [k for k in kwargs if k not in params]
        if unknown:
            noun = "parameter" if len(unknown) == 1 else "parameters"
            bad = ", ".join(repr(k) for k in unknown)
            raise ValueError(f"policy {name!r} has no {noun} {bad}; parameters: {listing}")
    try:
        sig.bind(**kwargs)
    except TypeError as exc:
        raise ValueError(f"policy {name!r}: {exc}; parameters: {listing}") from None
    try:
        policy = cls(**kwargs)
    except (TypeError, ValueError) as exc:  # a parameter of the wrong type or out of range
        named = isinstance(exc, UnknownPolicyError) or str(exc).startswith("policy '")
        if not kwargs or named:  # no parameters of ours, or the message names its policy
            raise
        raise ValueError(f"policy {name!r} with {kwargs}: {exc}") from exc
    if getattr(policy, "name", None) != name:
        policy.name = name  # a class registered lazily, or under several names
    if not isinstance(policy, Recommender):
        raise TypeError(f"policy {name!r} ({cls.__qualname__}) does not implement Recommender")
    return policy
