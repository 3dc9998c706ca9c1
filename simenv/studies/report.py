"""`recloop report`: one static ``report.html`` of a run folder or a sweep folder.

The page holds everything inline (PNG figures as ``data:`` URIs, the style, one small script)
and a Content-Security-Policy that forbids any request, so it opens offline and leaks nothing:

1. a header: what was run (scenario, settings, policies, seeds, ticks);
2. per setting (the values of the swept fields other than ``policy``): a summary table with
   each policy's mean over ticks and last-tick value (mean over seeds, 95% t-interval), then
   the paired differences between policies: per seed, policy B minus policy A, on the seeds
   both ran (the same seed is the same catalog, personas and graph), with its 95% interval;
3. for every recorded metric, a figure: mean over seeds per tick with a 95% band, a line per
   policy, a panel per setting (integer ticks on the time axis);
4. the LLM cost where personas were LLMs (``summary.json`` ``llm``: decisions and fallbacks
   over all jobs; ``llm_stats.json``: calls, prompts, tokens, cache hits, seconds);
5. the configuration (``config.yaml``; for a sweep the index and the first setting's YAML);
6. provenance (``made_with.json``).

The script sets ``data-figures`` on ``<body>`` to ``ok`` when every ``<img>`` decoded (a
natural width above 0), which the headless-Chromium test reads.
"""

from __future__ import annotations

import base64
import html
import io
import itertools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import yaml
from matplotlib.figure import Figure
from matplotlib.ticker import MaxNLocator

from simenv import __version__
from simenv.studies.plots import measured, metric_title
from simenv.studies.results import SETTING, Results, load
from simenv.studies.run_folder import RunFolder, write_text
from simenv.studies.runner import interval, t95

REPORT = "report.html"
KEYS = ("policy", "seed", "tick")
PAIRS_ALL_UP_TO = 4  # more policies than this: each policy against the first one only


class ReportError(ValueError):
    """The report cannot be written where asked."""


@dataclass(frozen=True)
class Report:
    path: Path
    figures: int
    metrics: list[str]
    settings: int


def write_report(source: Path | str, out: Path | str | None = None) -> Report:
    """Read the run or sweep folder ``source`` (`simenv.studies.load`) and write its report
    to ``out`` (default ``<source>/report.html``)."""
    source = Path(source)
    if out is not None:
        check_target(Path(out))  # before reading anything
    res = load(source, interactions=False)
    target = Path(out) if out is not None else source / REPORT
    names = metric_columns(res)
    figures = [(name, figure_png(res, name)) for name in names]
    page = render(res, names, figures)
    write_text(target, page)
    return Report(target, len(figures), names, len(res.configs))


def check_target(target: Path) -> None:
    """Refuse, before reading anything, an ``--out`` that is a folder or lies under a file."""
    if target.is_dir():
        raise ReportError(f"--out {target} is a folder; name the HTML file to write")
    parent = target.absolute().parent
    while not parent.exists() and parent != parent.parent:
        parent = parent.parent
    if not parent.is_dir():
        raise ReportError(f"--out {target}: {parent} is a file, so {target} cannot be written")


def metric_columns(res: Results) -> list[str]:
    """The metrics recorded (every numeric column but the keys and setting columns)."""
    skip = {*KEYS, *res.setting_columns}
    return [
        c
        for c in res.metrics.columns
        if c not in skip and pd.api.types.is_numeric_dtype(res.metrics[c])
    ]


# ---------------------------------------------------------------- statistics


def contexts(res: Results) -> list[tuple[str, pd.DataFrame]]:
    """The metrics per setting group: the values of the swept fields other than ``policy``
    (``""`` and all rows for a run folder), in the order the sweep lists them."""
    fields = res.row_fields
    if not fields:
        return [("", res.metrics)]
    groups = res.metrics.groupby(fields, sort=False, dropna=False)
    return [(_context_label(fields, key), frame) for key, frame in groups]


def _context_label(fields: Sequence[str], key: Any) -> str:
    values = key if isinstance(key, tuple) else (key,)
    return ", ".join(f"{f}={v}" for f, v in zip(fields, values, strict=True))


def band(frame: pd.DataFrame, name: str) -> pd.DataFrame:
    """Per policy and tick: mean over seeds and the 95% t-interval (``low``, ``high``)."""
    stats = frame.groupby(["policy", "tick"], sort=False)[name].agg(["mean", "std", "count"])
    dof = (stats["count"] - 1).clip(lower=1)
    half = dof.map(t95) * stats["std"].fillna(0) / np.sqrt(stats["count"].clip(lower=1))
    return stats.assign(low=stats["mean"] - half, high=stats["mean"] + half).reset_index()


def per_seed(frame: pd.DataFrame, name: str) -> dict[str, pd.DataFrame]:
    """Per policy: each seed's mean over ticks (``mean``) and last-tick value (``final``)."""
    last = frame["tick"].max()
    out = {}
    for policy, part in frame.groupby("policy", sort=False):
        by_seed = part.groupby("seed")[name]
        final = part[part["tick"] == last].set_index("seed")[name]
        out[str(policy)] = pd.DataFrame({"mean": by_seed.mean(), "final": final})
    return out


def policy_pairs(policies: Sequence[str]) -> list[tuple[str, str]]:
    """(A, B) pairs compared as B − A: all pairs for a few policies, else each against the
    first one."""
    if len(policies) <= PAIRS_ALL_UP_TO:
        return list(itertools.combinations(policies, 2))
    return [(policies[0], p) for p in policies[1:]]


def summary_rows(frame: pd.DataFrame, names: Sequence[str]) -> tuple[list[str], list[dict]]:
    """The policies and, per metric, each policy's intervals and the pairs' paired
    differences (``("diff", A, B)`` keys)."""
    policies = [str(p) for p in frame["policy"].unique()]
    rows = []
    for name in names:
        seeds = per_seed(frame, name)
        row: dict[Any, Any] = {"metric": name}
        for p in policies:
            row[p] = {s: interval(seeds[p][s]) for s in ("mean", "final")}
        for a, b in policy_pairs(policies):
            both = seeds[a].index.intersection(seeds[b].index)
            row[("diff", a, b)] = {
                s: interval(seeds[b].loc[both, s] - seeds[a].loc[both, s])
                for s in ("mean", "final")
            }
        rows.append(row)
    return policies, rows


# ---------------------------------------------------------------- figures


def figure_png(res: Results, name: str) -> bytes:
    """`metric_figure` as PNG bytes."""
    buffer = io.BytesIO()
    metric_figure(res, name).savefig(buffer, format="png", dpi=90)
    return buffer.getvalue()


def metric_figure(res: Results, name: str) -> Figure:
    """The figure of one metric: a panel per setting group, a line per policy (mean over
    seeds, 95% band), integer ticks on the time axis."""
    groups = contexts(res)
    policies = [str(p) for p in res.metrics["policy"].unique()]
    colours = {p: f"C{i % 10}" for i, p in enumerate(policies)}
    cols = min(3, len(groups))
    rows = int(np.ceil(len(groups) / cols))
    legend_rows = int(np.ceil(len(policies) / 4))
    height = 2.7 * rows + 0.45 + 0.25 * legend_rows
    fig = Figure(figsize=(4.4 * cols if cols > 1 else 5.4, height))
    axes = fig.subplots(rows, cols, squeeze=False, sharex=True, sharey=True)
    for ax, (label, frame) in zip(axes.ravel(), groups, strict=False):
        stats = band(frame, name)
        for policy, all_ticks in stats.groupby("policy", sort=False):
            line = measured(all_ticks)  # may be empty: the legend still names the policy
            colour = colours[str(policy)]
            ax.plot(line["tick"], line["mean"], color=colour, lw=1.6, label=str(policy))
            if (line["count"] > 1).any():
                ax.fill_between(line["tick"], line["low"], line["high"], color=colour, alpha=0.18)
        if label:
            ax.set_title(label, fontsize=8)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))  # ticks are whole days
        ax.grid(alpha=0.3)
    for ax in axes.ravel()[len(groups) :]:
        ax.axis("off")
    for ax in axes[-1, :]:
        ax.set_xlabel("tick")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", fontsize=8, ncol=min(4, len(labels)),
               frameon=False)  # fmt: skip
    fig.suptitle(metric_title(name), fontsize=10)
    fig.tight_layout(rect=(0, 0.25 * legend_rows / height + 0.04, 1, 1))
    return fig


# ---------------------------------------------------------------- the page


STYLE = """
body { font: 14px/1.45 system-ui, sans-serif; margin: 1.5em auto; max-width: 1150px;
       padding: 0 1em; color: #222; }
h1 { font-size: 1.5em; margin-bottom: 0.2em; } h2 { border-bottom: 1px solid #ccc; }
.meta { color: #555; } nav a { margin-right: 1em; }
table { border-collapse: collapse; margin: 0.6em 0 1.2em; font-size: 12.5px; }
th, td { border: 1px solid #ddd; padding: 3px 7px; text-align: right; white-space: nowrap; }
th { background: #f3f3f3; } td:first-child, th:first-child { text-align: left; }
td.sig { font-weight: 600; background: #eef6ee; }
.ci { color: #777; font-size: 11px; }
.figures { display: grid; grid-template-columns: repeat(auto-fill, minmax(480px, 1fr));
           gap: 0.5em 1em; }
figure { margin: 0; } img { max-width: 100%; }
pre { background: #f7f7f7; padding: 0.8em; overflow-x: auto; font-size: 12px; }
details { margin: 0.5em 0; } .scroll { overflow-x: auto; }
"""

CHECK_FIGURES = """
window.addEventListener("load", function () {
  var imgs = Array.prototype.slice.call(document.images);
  var ok = imgs.every(function (i) { return i.complete && i.naturalWidth > 0; });
  document.body.setAttribute("data-figures", ok ? "ok" : "broken");
  document.body.setAttribute("data-figures-decoded",
    String(imgs.filter(function (i) { return i.naturalWidth > 0; }).length));
});
"""

CSP = "default-src 'none'; img-src data:; style-src 'unsafe-inline'; script-src 'unsafe-inline'"


def render(res: Results, names: Sequence[str], figures: Sequence[tuple[str, bytes]]) -> str:
    """The whole page."""
    first = next(iter(res.folders.values()))
    scenario = first.scenario()
    policies = [str(p) for p in res.metrics["policy"].unique()]
    seeds = sorted(int(s) for s in res.metrics["seed"].unique())
    ticks = int(res.metrics["tick"].max()) + 1 if len(res.metrics) else 0
    kind = "sweep" if res.kind == "sweep" else "run"
    title = f"recloop {kind}: {scenario.name}"
    parts = [
        "<!DOCTYPE html>",
        '<html lang="en"><head><meta charset="utf-8">',
        f'<meta http-equiv="Content-Security-Policy" content="{CSP}">',
        f"<title>{_e(title)}</title><style>{STYLE}</style>",
        f"<script>{CHECK_FIGURES}</script></head>",
        f'<body data-figures="pending" data-figures-expected="{len(figures)}">',
        f"<h1>{_e(title)}</h1>",
        f'<p class="meta">{_e(str(res.path))} · {len(res.configs)} setting(s) · '
        f"policies: {_e(', '.join(policies))} · {len(seeds)} seed(s) {_e(_seeds(seeds))} · "
        f"{ticks} ticks · made by recloop {_e(_made_by(first))}, report by recloop "
        f"{_e(__version__)}</p>",
        '<nav><a href="#summary">Summary</a><a href="#figures">Figures</a>'
        '<a href="#llm">LLM cost</a><a href="#config">Configuration</a>'
        '<a href="#provenance">Provenance</a></nav>',
        _summary_section(res, names),
        _figures_section(figures),
        _llm_section(res),
        _config_section(res),
        _provenance_section(res),
        "</body></html>",
    ]
    return "\n".join(parts) + "\n"


def _e(text: str) -> str:
    return html.escape(text, quote=True)


def _seeds(seeds: Sequence[int]) -> str:
    if seeds and seeds == list(range(seeds[0], seeds[-1] + 1)) and len(seeds) > 2:
        return f"({seeds[0]}–{seeds[-1]})"
    return f"({', '.join(map(str, seeds))})"


def _made_by(run: RunFolder) -> str:
    if not run.made_with.is_file():
        return "(unknown)"
    return str(json.loads(run.made_with.read_text()).get("recloop", "(unknown)"))


def _num(x: float) -> str:
    if not np.isfinite(x):
        return "n/a"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    return f"{x:.3g}" if x != 0 and abs(x) < 0.001 else f"{x:.3f}"


def _cell(stat: dict[str, Any], signed: bool = False) -> str:
    """One table cell of `runner.interval`'s mean, low, high and n."""
    mean, low, high, n = stat["mean"], stat["low"], stat["high"], stat["n"]
    if n == 0:
        return "<td>n/a</td>"
    sig = signed and n > 1 and (low > 0 or high < 0)
    ci = f' <span class="ci">[{_num(low)}, {_num(high)}]</span>' if n > 1 else ""
    sign = "+" if signed and mean > 0 else ""
    return f"<td{' class=sig' if sig else ''}>{sign}{_num(mean)}{ci}</td>"


def _summary_section(res: Results, names: Sequence[str]) -> str:
    out = [
        '<h2 id="summary">Summary</h2>',
        "<p>Mean over ticks and last-tick value, each the mean over seeds with its 95% "
        "t-interval <span class=ci>[low, high]</span>. <b>B − A</b> is the paired difference "
        "of policy B and policy A over the seeds both ran (same seed: same catalog, personas "
        "and graph); shaded when its interval excludes 0.</p>",
    ]
    for label, frame in contexts(res):
        policies, rows = summary_rows(frame, names)
        pairs = policy_pairs(policies)
        if label:
            out.append(f"<h3>{_e(label)}</h3>")
        for stat, what in (("mean", "mean over ticks"), ("final", "last tick")):
            head = "".join(f"<th>{_e(p)}</th>" for p in policies)
            head += "".join(f"<th>{_e(b)} − {_e(a)}</th>" for a, b in pairs)
            body = []
            for row in rows:
                cells = "".join(_cell(row[p][stat]) for p in policies)
                cells += "".join(_cell(row[("diff", a, b)][stat], True) for a, b in pairs)
                body.append(f"<tr><td>{_e(metric_title(row['metric']))}</td>{cells}</tr>")
            table = (
                f"<table><caption>{what}</caption><tr><th>metric</th>{head}</tr>"
                + "".join(body)
                + "</table>"
            )
            table = f'<div class="scroll">{table}</div>'
            if stat == "final":
                table = f"<details><summary>last tick</summary>{table}</details>"
            out.append(table)
    return "\n".join(out)


def _figures_section(figures: Sequence[tuple[str, bytes]]) -> str:
    out = [
        '<h2 id="figures">Figures</h2>',
        "<p>Every recorded metric over ticks: the mean over seeds, shaded its 95% t-interval; a "
        "line per policy, a panel per setting.</p>",
        '<div class="figures">',
    ]
    for name, png in figures:
        data = base64.b64encode(png).decode("ascii")
        out.append(
            f'<figure id="fig-{_e(name)}"><img alt="{_e(name)} over ticks" '
            f'src="data:image/png;base64,{data}"></figure>'
        )
    out.append("</div>")
    return "\n".join(out)


LLM_FIELDS = ("calls", "prompts", "prompt_tokens", "completion_tokens", "cache_hits",
              "failures", "retries", "seconds")  # fmt: skip


def _llm_section(res: Results) -> str:
    out = ['<h2 id="llm">LLM cost</h2>']
    found = False
    for sid, run in res.folders.items():
        summary = json.loads(run.summary.read_text())
        llm = summary.get("llm")
        if not llm:
            continue
        found = True
        where = f"setting {sid}: " if res.kind == "sweep" else ""
        out.append(
            f"<p>{_e(where)}{llm['decisions']} LLM decisions over {llm['jobs']} job(s), "
            f"{llm['fallbacks']} fell back to the utility model "
            f"({100 * llm['fallback_share']:.1f}%).</p>"
        )
        layers = _jobs_layers(run)
        if layers:
            out.append(_layers_table(layers))
    if not found:
        out.append("<p>No LLM personas in this study (utility users): no LLM cost.</p>")
    else:
        out.append(
            '<p class="meta">Backend statistics summed over the finished jobs of each run '
            "folder (each job's <code>llm_stats.json</code>; a resumed job counts the calls "
            "made after its resume).</p>"
        )
    return "\n".join(out)


def _jobs_layers(run: RunFolder) -> list[dict[str, Any]]:
    """Every finished job's backend statistics of ``run``, summed layer by layer."""
    from simenv.llm.wrappers import layers_total

    readings = []
    for part in run.parts(run.scenario()):
        stats = part.read_llm_stats() if part.is_done() else None
        if stats and stats.get("layers"):
            readings.append(stats["layers"])
    return layers_total(readings)


def _layers_table(layers: list[dict[str, Any]]) -> str:
    head = "".join(f"<th>{f}</th>" for f in LLM_FIELDS)
    rows = []
    for layer in layers:
        values = layer.get("stats", {})
        cells = "".join(
            f"<td>{_num(float(values[f])) if f in values else ''}</td>" for f in LLM_FIELDS
        )
        name = f"{layer.get('layer', '')} ({layer.get('model', '')})"
        rows.append(f"<tr><td>{_e(name)}</td>{cells}</tr>")
    return f"<table><tr><th>layer</th>{head}</tr>{''.join(rows)}</table>"


def _config_section(res: Results) -> str:
    out = ['<h2 id="config">Configuration</h2>']
    first_id, first = next(iter(res.folders.items()))
    if res.kind == "sweep":
        index = {k: v for k, v in res.index.items() if k != "settings"}
        out.append("<p>The sweep (sweep.json without its settings) and its settings:</p>")
        out.append(f"<pre>{_e(yaml.safe_dump(index, sort_keys=False))}</pre>")
        out.append(res.configs.to_html(index=False, na_rep="", border=0))
        out.append(f"<p>config.yaml of setting {_e(first_id)} (the others differ by the "
                   "fields above):</p>")  # fmt: skip
    out.append(f"<pre>{_e(first.config.read_text())}</pre>")
    return "\n".join(out)


def _provenance_section(res: Results) -> str:
    out = ['<h2 id="provenance">Provenance</h2>']
    seen: dict[str, list[str]] = {}
    for sid, run in res.folders.items():
        text = run.made_with.read_text() if run.made_with.is_file() else "(no made_with.json)"
        seen.setdefault(text, []).append(sid)
    for text, sids in seen.items():
        if res.kind == "sweep":
            out.append(f"<p>settings {_e(', '.join(sids))}:</p>")
        out.append(f"<pre>{_e(text)}</pre>")
    return "\n".join(out)


__all__ = ["REPORT", "SETTING", "Report", "ReportError", "write_report"]
