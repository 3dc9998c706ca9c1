"""The metric registry: every per-tick metric is a named, self-describing :class:`Metric`.

A metric reads only the :class:`~simenv.metrics.context.MetricContext` fields it declares in
``inputs`` and returns one float. A metric with no data this tick (no impressions, nobody
present, ...) returns ``nan``; it never raises.

Adding a metric::

    @register("my_metric", higher_is_better=True, inputs=("chosen_item",))
    def my_metric(ctx: MetricContext) -> float:
        \"\"\"One precise sentence with the formula (this becomes the description).\"\"\"
        ...

and add its hand-computed value to ``tests/test_metrics.py`` (a test walks the whole registry).

A world records the metrics its scenario names in ``metrics`` (default: every metric
registered with ``by_default=True``) plus its ``extra_metrics``: `recorded`. Metrics that only
some studies need (who pays for popularity bias, supply diversity, ...) are registered with
``by_default=False`` and recorded only when a scenario asks for them.

Metrics registered ``heavy=True`` cost more than they tell when measured at every tick of a
large population (a pass over every user's or every slate's topic vector: tens of
milliseconds at 100k users, where a count costs microseconds). A scenario's ``metrics_every =
N`` computes them only at the ticks where `due` says so (every N-th tick and the last one);
on the other ticks their column holds ``nan``. Every other metric is computed at every tick.
"""

from __future__ import annotations

import dataclasses
import difflib
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass

from simenv.metrics.context import MetricContext

MetricFn = Callable[[MetricContext], float]
NAN = float("nan")

#: ``MetricContext`` fields a metric may declare in ``inputs``.
CONTEXT_FIELDS: frozenset[str] = frozenset(f.name for f in dataclasses.fields(MetricContext))

#: Fields holding this tick's sessions and served slates. A metric that reads any of them
#: is ``nan`` on a tick without impressions.
IMPRESSION_FIELDS: frozenset[str] = frozenset(
    {"imp_users", "slates", "chosen_item", "rating", "session_length"}
)


class UnknownMetricError(ValueError):
    """Raised when a metric name is not in the registry."""


@dataclass(frozen=True)
class Metric:
    """A registered per-tick metric.

    Attributes:
        name: registry key, also the column name in ``metrics.parquet``.
        description: the precise definition (formula, domain, what makes it ``nan``).
        higher_is_better: ``True``/``False``, or ``None`` when the metric is descriptive only.
        inputs: names of the ``MetricContext`` fields ``fn`` reads.
        fn: ``MetricContext -> float``.
        by_default: recorded by every world unless its scenario names its ``metrics``
            (``False``: only when a scenario asks for it).
        heavy: costly at many users, so computed only at the ticks a scenario's
            ``metrics_every`` makes `due` (``nan`` on the others).
    """

    name: str
    description: str
    higher_is_better: bool | None
    inputs: tuple[str, ...]
    fn: MetricFn
    by_default: bool = True
    heavy: bool = False

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("metric name must be non-empty")
        if not self.description.strip():
            raise ValueError(f"metric {self.name!r} needs a description")
        unknown = sorted(set(self.inputs) - CONTEXT_FIELDS)
        if unknown:
            raise ValueError(
                f"metric {self.name!r} declares inputs that are not MetricContext fields: "
                f"{unknown}; known fields: {sorted(CONTEXT_FIELDS)}"
            )

    @property
    def needs_impressions(self) -> bool:
        """Whether the metric reads this tick's slates (and so is ``nan`` without any)."""
        return not IMPRESSION_FIELDS.isdisjoint(self.inputs)

    def __call__(self, ctx: MetricContext) -> float:
        return float(self.fn(ctx))


_REGISTRY: dict[str, Metric] = {}


def register(
    name: str,
    *,
    higher_is_better: bool | None,
    inputs: Iterable[str],
    description: str | None = None,
    by_default: bool = True,
    heavy: bool = False,
) -> Callable[[MetricFn], MetricFn]:
    """Decorator registering ``fn`` as metric ``name``.

    The description defaults to the function's docstring. ``by_default=False`` records it
    only in scenarios that ask for it; ``heavy=True`` computes it only at the ticks `due`
    names. Registering a name twice raises ``ValueError``. The
    function is returned unchanged.
    """

    def decorator(fn: MetricFn) -> MetricFn:
        if name in _REGISTRY:
            raise ValueError(f"metric {name!r} is already registered")
        text = description if description is not None else inspect.getdoc(fn) or ""
        _REGISTRY[name] = Metric(
            name=name,
            description=text,
            higher_is_better=higher_is_better,
            inputs=tuple(inputs),
            fn=fn,
            by_default=by_default,
            heavy=heavy,
        )
        return fn

    return decorator


def available() -> list[str]:
    """Names of all registered metrics, sorted."""
    return sorted(_REGISTRY)


def defaults() -> list[str]:
    """Names of the metrics every world records unless told otherwise, sorted."""
    return [name for name in available() if _REGISTRY[name].by_default]


def heavy() -> list[str]:
    """Names of the metrics computed only every ``metrics_every`` ticks, sorted."""
    return [name for name in available() if _REGISTRY[name].heavy]


def due(tick: int, every: int, last_tick: int) -> bool:
    """Whether the heavy metrics are computed at ``tick`` under ``metrics_every = every``:
    at ticks 0, N, 2N, ... and at ``last_tick`` (the run's last, so a summary's last-tick
    value always exists). ``every = 1``: at every tick."""
    return tick % every == 0 or tick == last_tick


def recorded(metrics: Iterable[str] | None, extra: Iterable[str] = ()) -> list[str]:
    """The metrics a scenario records, in column order: ``metrics`` (if none are named:
    `defaults`), then the ``extra`` ones not already named. Unknown names raise
    `UnknownMetricError`."""
    names = list(metrics or defaults())
    names += [m for m in dict.fromkeys(extra) if m not in names]
    for name in names:
        get(name)
    return names


def get(name: str, where: str | None = None) -> Metric:
    """The metric called ``name``; :class:`UnknownMetricError` naming the closest known name
    and listing all of them otherwise (``where``: the field that named it, for the message)."""
    try:
        return _REGISTRY[name]
    except KeyError:
        close = difflib.get_close_matches(str(name), available(), n=1)
        place = f" in {where}" if where else ""
        guess = f"; did you mean {close[0]!r}?" if close else ""
        raise UnknownMetricError(
            f"unknown metric {name!r}{place}{guess} (available metrics: {', '.join(available())})"
        ) from None


def compute(
    ctx: MetricContext, names: Iterable[str] | None = None, *, with_heavy: bool = True
) -> dict[str, float]:
    """Compute the named metrics (all registered ones by default) for one tick.

    ``with_heavy=False``: the heavy metrics among them are not computed and are ``nan`` (a tick
    that `due` skips); the keys keep the order of ``names``. Unknown names raise
    :class:`UnknownMetricError` before anything is computed.
    """
    metrics = [get(n) for n in (available() if names is None else names)]
    return {m.name: m(ctx) if with_heavy or not m.heavy else NAN for m in metrics}
