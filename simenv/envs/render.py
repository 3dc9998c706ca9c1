"""What the recloop environments show when asked to render (``render_mode="ansi"`` or
``"rgb_array"``).

A session environment keeps a `SessionTrace` per slot only when it was made with a render
mode: the slates served so far, the user's answer to each (the chosen position and its
rating) and the rewards. Nothing is recorded and nothing is drawn otherwise, and matplotlib
is imported by the first ``rgb_array`` frame, not before.

- ``ansi``: `session_text`, the last slate (item, topic, title), the user's answer, the reward
  and the session's return as text;
- ``rgb_array``: `session_image`, a small picture (`IMAGE_SIZE`) of the session so far: one
  row per slate, one cell per slot coloured by the item's main topic, the chosen item framed
  with its rating, and the reward of each slate as a bar. Drawn with matplotlib's
  object-oriented API on an Agg canvas (no pyplot state, no window).

`figure_pixels` turns any matplotlib `Figure` into an ``(H, W, 3)`` uint8 array; the
ecosystem env's frames use it too.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from simenv.world import World

if TYPE_CHECKING:
    from matplotlib.figure import Figure

#: The render modes of every recloop environment, in the order of ``metadata["render_modes"]``.
RENDER_MODES = ("ansi", "rgb_array")
#: ``metadata["render_fps"]``: frames per second when frames are played as a video.
RENDER_FPS = 4
#: Height and width in pixels of an ``rgb_array`` frame (figure inches × `DPI`).
IMAGE_SIZE = (320, 640)
DPI = 100


def check_render_mode(render_mode: str | None) -> str | None:
    """``render_mode`` if recloop envs render it; a ValueError naming the modes otherwise."""
    if render_mode is not None and render_mode not in RENDER_MODES:
        raise ValueError(
            f"render_mode must be None or one of {', '.join(map(repr, RENDER_MODES))}, "
            f"got {render_mode!r}"
        )
    return render_mode


@dataclass(frozen=True)
class SlateRecord:
    """One served slate as it is shown."""

    slate: np.ndarray  # item ids, in slot order
    chosen: int  # slot of the chosen item, -1 when nothing was chosen
    rating: float  # stars given to the chosen item, 0 without a choice
    reward: float
    explore_share: float


@dataclass
class SessionTrace:
    """The running session of one slot: its user, the tick it started in and its slates."""

    user: int = -1
    tick: int = -1
    slates: list[SlateRecord] = field(default_factory=list)
    end: str = ""  # "" while running, else why the session ended

    @property
    def total(self) -> float:
        return float(sum(s.reward for s in self.slates))


class SessionTraces:
    """One `SessionTrace` per slot, fed by the env's infos (kept only when rendering)."""

    def __init__(self, n: int) -> None:
        self.sessions = [SessionTrace() for _ in range(n)]

    def start(self, slots: Sequence[int] | np.ndarray, users: np.ndarray, tick: int) -> None:
        """New sessions in ``slots`` for their ``users`` (the core's users of every slot)."""
        for i in slots:
            self.sessions[int(i)] = SessionTrace(int(users[int(i)]), int(tick))

    def record(
        self,
        infos: Sequence[dict[str, Any]],
        rewards: np.ndarray,
        terminated: np.ndarray,
        truncated: np.ndarray,
    ) -> None:
        """Append each slot's slate from the step's infos (keys of `SessionCore.step`)."""
        for i, info in enumerate(infos):
            slate = np.asarray(info["slate"], dtype=np.int64)
            hit = np.flatnonzero(slate == info["item"]) if info["clicked"] else np.empty(0)
            trace = self.sessions[i]
            trace.slates.append(
                SlateRecord(
                    slate=slate.copy(),
                    chosen=int(hit[0]) if hit.size else -1,
                    rating=float(info["rating"]),
                    reward=float(rewards[i]),
                    explore_share=float(info["explore_share"]),
                )
            )
            if terminated[i]:
                trace.end = "the user ended the session"
            elif truncated[i]:
                trace.end = "truncated after the last slate"


def render_session(
    render_mode: str | None, trace: SessionTrace, world: World, *, max_steps: int, mode: str
) -> str | np.ndarray | None:
    """The frame of ``trace`` in ``render_mode`` (None when no render mode was asked for)."""
    if render_mode == "ansi":
        return session_text(trace, world, max_steps=max_steps, mode=mode)
    if render_mode == "rgb_array":
        return session_image(trace, world, max_steps=max_steps)
    return None


def _topics(world: World, items: np.ndarray) -> np.ndarray:
    """The main topic (index of the largest feature) of each item."""
    return np.argmax(world.items.features[items], axis=1)


def _title(world: World, item: int, width: int = 32) -> str:
    titles = world.items.titles
    text = " ".join(str(titles[item]).split()) if item < len(titles) else ""
    return text if len(text) <= width else text[: width - 1] + "…"


def session_text(trace: SessionTrace, world: World, *, max_steps: int, mode: str) -> str:
    """The last slate of the session, the user's answer and the reward, as text."""
    n = len(trace.slates)
    head = f"tick {trace.tick} · user {trace.user} · slate {n} of at most {max_steps}"
    if not trace.slates:
        return f"{head}\nnew session: no slate served yet\n"
    last = trace.slates[-1]
    names = world.items.topic_names
    lines = [head]
    if mode == "exploration":
        lines.append(f"exploration share {last.explore_share:.2f}")
    for pos, (item, topic) in enumerate(zip(last.slate, _topics(world, last.slate), strict=True)):
        mark = f"  <- chosen, rated {last.rating:.0f}" if pos == last.chosen else ""
        title = _title(world, int(item))
        lines.append(f"  {pos + 1:>2}. item {int(item):>6}  {names[topic]:<14} {title}{mark}")
    if last.chosen < 0:
        lines.append("answer: nothing chosen")
    else:
        item = int(last.slate[last.chosen])
        lines.append(
            f"answer: chose item {item} (slot {last.chosen + 1}), rating {last.rating:.0f}"
        )
    lines.append(f"reward {last.reward:+.3f} · session return {trace.total:+.3f}")
    if trace.end:
        lines.append(f"session over: {trace.end}")
    return "\n".join(lines) + "\n"


def session_image(trace: SessionTrace, world: World, *, max_steps: int) -> np.ndarray:
    """A picture of the session so far, ``(*IMAGE_SIZE, 3)`` uint8 (see the module docstring)."""
    import matplotlib as mpl
    from matplotlib.figure import Figure
    from matplotlib.patches import Rectangle

    k = int(world.spec.k)
    rows = max(max_steps, len(trace.slates), 1)
    names = world.items.topic_names
    colours = mpl.colormaps["tab20"]
    fig = Figure(figsize=(IMAGE_SIZE[1] / DPI, IMAGE_SIZE[0] / DPI), dpi=DPI)
    grid, bars = fig.subplots(1, 2, gridspec_kw={"width_ratios": [4, 1]})
    grid.set_xlim(0, k)
    grid.set_ylim(rows, 0)
    grid.set_xticks(np.arange(k) + 0.5, [str(j + 1) for j in range(k)], fontsize=7)
    grid.set_yticks(np.arange(rows) + 0.5, [str(r + 1) for r in range(rows)], fontsize=7)
    grid.set_xlabel("slot", fontsize=8)
    grid.set_ylabel("slate", fontsize=8)
    grid.tick_params(length=0)
    for r in range(rows):
        for j in range(k):
            grid.add_patch(Rectangle((j, r), 1, 1, facecolor="0.93", edgecolor="white"))
    for r, rec in enumerate(trace.slates):
        for j, topic in enumerate(_topics(world, rec.slate)):
            chosen = j == rec.chosen
            grid.add_patch(
                Rectangle(
                    (j + 0.04, r + 0.06), 0.92, 0.88,
                    facecolor=colours(int(topic) % 20),
                    edgecolor="black" if chosen else "white",
                    linewidth=2.5 if chosen else 0.5,
                )
            )  # fmt: skip
            label = names[int(topic)][:7] + (f"\n{rec.rating:.0f}★" if chosen else "")
            grid.text(j + 0.5, r + 0.5, label, ha="center", va="center", fontsize=6)
    status = f" · {trace.end}" if trace.end else ""
    grid.set_title(f"tick {trace.tick} · user {trace.user}{status}", fontsize=8)
    rewards = [rec.reward for rec in trace.slates]
    bars.barh(np.arange(len(rewards)) + 0.5, rewards, height=0.6, color="tab:blue")
    bars.set_ylim(rows, 0)
    bars.set_yticks([])
    bars.axvline(0.0, color="0.4", linewidth=0.8)
    bars.tick_params(labelsize=7)
    bars.set_title(f"reward · return {trace.total:+.2f}", fontsize=8)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=0.14, wspace=0.08)
    return figure_pixels(fig)


def figure_pixels(fig: Figure) -> np.ndarray:
    """The pixels of ``fig`` drawn on an Agg canvas, ``(H, W, 3)`` uint8 (alpha dropped)."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    canvas = FigureCanvasAgg(fig)
    canvas.draw()
    return np.asarray(canvas.buffer_rgba())[..., :3].copy()


@dataclass(frozen=True)
class MarketView:
    """What a frame of ``recloop/ecosystem`` shows: the platforms and creator agents after
    the last tick."""

    cycle: int
    max_cycles: int
    platforms: list[str]
    strategies: list[str]  # each platform's strategy in the last tick
    share: np.ndarray  # (P,) market share of the last tick's visitors
    ctr: np.ndarray  # (P,) clicks per slate
    satisfaction: np.ndarray  # (P,) mean satisfaction of the platform's visitors
    creators: list[str]
    exposure: np.ndarray  # (C,) share of all impressions
    consumption: np.ndarray  # (C,) share of all consumptions
    topics: list[str]  # each creator's main topic


def market_text(view: MarketView) -> str:
    """The platforms' market shares and the creators' exposure as a text table."""
    lines = [f"tick {view.cycle} of {view.max_cycles}"]
    lines.append(f"{'platform':<14}{'strategy':<16}{'share':>7}{'ctr':>7}{'satisfaction':>14}")
    for i, name in enumerate(view.platforms):
        lines.append(
            f"{name:<14}{view.strategies[i]:<16}{view.share[i]:>7.3f}{view.ctr[i]:>7.3f}"
            f"{view.satisfaction[i]:>14.3f}"
        )
    if view.creators:
        lines.append(f"{'creator':<14}{'topic':<16}{'exposure':>9}{'consumption':>13}")
        for c, name in enumerate(view.creators):
            lines.append(
                f"{name:<14}{view.topics[c]:<16}{view.exposure[c]:>9.3f}"
                f"{view.consumption[c]:>13.3f}"
            )
    return "\n".join(lines) + "\n"


def market_image(view: MarketView) -> np.ndarray:
    """Bars of the platforms' market share and CTR and of the creator agents' exposure and
    consumption shares, ``(*IMAGE_SIZE, 3)`` uint8."""
    from matplotlib.figure import Figure

    fig = Figure(figsize=(IMAGE_SIZE[1] / DPI, IMAGE_SIZE[0] / DPI), dpi=DPI)
    left, right = fig.subplots(1, 2)
    x = np.arange(len(view.platforms))
    left.bar(x - 0.2, view.share, width=0.4, label="market share")
    left.bar(x + 0.2, view.ctr, width=0.4, label="CTR")
    labels = [f"{p}\n{s}" for p, s in zip(view.platforms, view.strategies, strict=True)]
    left.set_xticks(x, labels, fontsize=7)
    left.set_ylim(0, 1)
    left.legend(fontsize=7, loc="upper right")
    left.set_title(f"platforms · tick {view.cycle} of {view.max_cycles}", fontsize=8)
    y = np.arange(len(view.creators))
    right.bar(y - 0.2, view.exposure, width=0.4, label="exposure share", color="tab:green")
    right.bar(y + 0.2, view.consumption, width=0.4, label="consumption share", color="tab:red")
    creator_labels = [f"{c}\n{t}" for c, t in zip(view.creators, view.topics, strict=True)]
    right.set_xticks(y, creator_labels, fontsize=7)
    right.set_ylim(0, 1)
    right.legend(fontsize=7, loc="upper right")
    right.set_title("creator agents", fontsize=8)
    for ax in (left, right):
        ax.tick_params(labelsize=7)
    fig.subplots_adjust(left=0.06, right=0.98, top=0.9, bottom=0.18, wspace=0.15)
    return figure_pixels(fig)


def render_market(render_mode: str | None, view: MarketView) -> str | np.ndarray | None:
    """The ecosystem's frame in ``render_mode`` (None when no render mode was asked for)."""
    if render_mode == "ansi":
        return market_text(view)
    if render_mode == "rgb_array":
        return market_image(view)
    return None
