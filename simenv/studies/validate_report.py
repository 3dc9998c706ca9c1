"""The files of `recloop validate`: ``validation.json``, ``validation.md`` and ``plots/``.

`write_report` takes the report that `simenv.studies.validate.run_validation` returns and
writes it as JSON (every number), as Markdown (tables headed by the decider, its model and
backend, the sample and the seed they hold for) and as figures drawn on matplotlib `Figure`
objects (no pyplot state): ``taste.png`` (accuracy and AUC per setting), ``ratings.png`` (star
distributions) and ``behaviour.png`` (trait-outcome rank correlations).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from simenv.studies.run_folder import write_json, write_text

REPORT_JSON = "validation.json"
REPORT_MD = "validation.md"
PLOTS = "plots"
NAMES = {
    "persona": None,  # the report's persona label
    "popularity": "popularity count",
    "item_mean": "item mean rating",
    "mf": "MF (implicit ALS)",
    "global_mean": "global mean rating",
}
SCHEME_TEXT = {"uniform": "uniform negatives", "popularity": "popularity-matched negatives"}


def write_report(report: dict[str, Any], out: Path) -> list[Path]:
    """Write the report's JSON, Markdown and figures into ``out``; returns the paths."""
    out.mkdir(parents=True, exist_ok=True)
    paths = [
        write_json(out / REPORT_JSON, report),
        write_text(out / REPORT_MD, markdown(report)),
    ]
    return paths + plot_report(report, out / PLOTS)


def _name(report: dict[str, Any], model: str) -> str:
    return str(report["persona"]) if model == "persona" else str(NAMES.get(model) or model)


def _f(x: Any, digits: int = 3) -> str:
    if x is None or (isinstance(x, float) and not np.isfinite(x)):
        return "n/a"
    return f"{x:.{digits}f}"


def provenance_line(report: dict[str, Any]) -> str:
    """Which decider, model, backend, sample and seed every number of the report is for."""
    d, s, sp = report["decider"], report["sample"], report["split"]
    parts = [f"decider `{d['kind']}`, persona model `{d['persona_model']}`"]
    if d["kind"] == "llm":
        llm = d["llm"]
        extra = f", calibration `{llm['calibration']}`" if "calibration" in llm else ""
        parts.append(
            f"LLM backend `{llm['backend']}`, model `{llm['model']}`, prompts "
            f"`{d['prompt_version']}`{extra}"
        )
    parts.append(f"weights from `{d['utility_file']}`" if d["utility_file"] else "scenario weights")
    cap = f", at most {s['max_per_user']} pairs per user" if s["max_per_user"] else ""
    parts.append(
        f"users: {s['users']} of the {s['eligible_users']} with a held-out rating >= 4 "
        f"(seed {s['seed']}){cap}"
    )
    parts.append(
        f"split: first {sp['train_share']:.0%} of each user's ratings by time "
        f"({sp['train_ratings']} training, {sp['held_out_ratings']} held-out ratings)"
    )
    parts.append(f"seed {report['seed']} for users, negatives and the behaviour world")
    data = (report.get("made_with") or {}).get("data") or {}
    if data:
        parts.append(f"data sha256 {str(data.get('sha256'))[:12]}")
    return "; ".join(parts) + "."


def markdown(report: dict[str, Any]) -> str:
    """The report as Markdown."""
    lines = [
        f"# Validation of {report['persona']} on {report['dataset']}",
        "",
        "Every number below is for: " + provenance_line(report),
        "",
        *_taste_md(report),
        *_ratings_md(report),
        *_behaviour_md(report),
        *_hygiene_md(report),
        f"({report['seconds']} s)",
        "",
    ]
    return "\n".join(lines)


def _taste_md(report: dict[str, Any]) -> list[str]:
    lines = [
        "## 1. Taste alignment",
        "",
        "Held-out items rated >= 4 against items the user never rated, each shown to the "
        "persona alone. The persona watches by its own choice rule (p(item) > p(none): utility "
        "above the no-choice utility, or the LLM's more likely answer); the baselines, which "
        "have no choice rule, watch their top m candidates per user (m = the user's number of "
        "positives). Metrics are computed per user and averaged over users; AUC ranks by "
        "log p(item)/p(none) or by the baseline's score.",
        "",
    ]
    for scheme in ("uniform", "popularity"):
        rows = [t for t in report["taste"] if t["scheme"] == scheme]
        if not rows:
            continue
        lines += [
            f"### {SCHEME_TEXT[scheme]}",
            "",
            "| ratio | model | accuracy | precision | recall | F1 | AUC |",
            "| --- | --- | ---: | ---: | ---: | ---: | ---: |",
        ]
        for t in rows:
            for model, m in t["models"].items():
                lines.append(
                    f"| 1:{t['ratio']} | {_name(report, model)} | {_f(m['accuracy'])} | "
                    f"{_f(m['precision'])} | {_f(m['recall'])} | {_f(m['f1'])} | {_f(m['auc'])} |"
                )
        t0 = rows[0]
        lines += [
            "",
            f"({t0['models']['persona']['n_users']} users; 1:{t0['ratio']}: {t0['positives']} "
            f"positives, {t0['negatives']} negatives"
            + (f"; {t0['unanswered']} candidates without an answer" if t0["unanswered"] else "")
            + ")",
            "",
        ]
    return lines


def _ratings_md(report: dict[str, Any]) -> list[str]:
    r = report["ratings"]
    lines = [
        "## 2. Ratings",
        "",
        f"The persona's star distribution for each of the {r['pairs']} held-out ratings' items, "
        "averaged, against the held-out ratings; MAE/RMSE of the expected rating per user, "
        "averaged over users; bias = mean(prediction − truth).",
        "",
        "| distribution | 1 | 2 | 3 | 4 | 5 | 1-2 stars |",
        "| --- | ---: | ---: | ---: | ---: | ---: | ---: |",
    ]
    rows = [("held-out data", r["data"]), (report["persona"], r["simulated"])]
    b = report.get("behaviour")
    if b and b.get("world_ratings"):
        rows.append(
            (f"world ({b['policy']}, {b['ticks']} ticks, chosen items)", b["world_ratings"])
        )
    for name, dist in rows:
        cells = " | ".join(_f(x) for x in dist)
        lines.append(f"| {name} | {cells} | {_f(sum(dist[:2]))} |")
    lines += [
        "",
        f"Total variation {_f(r['total_variation'])}, Jensen-Shannon {_f(r['jensen_shannon'], 4)}"
        " bits (persona vs held-out data).",
        "",
        "| model | MAE | RMSE | bias |",
        "| --- | ---: | ---: | ---: |",
    ]
    for model, e in r["errors"].items():
        lines.append(
            f"| {_name(report, model)} | {_f(e['mae'])} | {_f(e['rmse'])} | {_f(e['bias'])} |"
        )
    return [*lines, ""]


def _behaviour_md(report: dict[str, Any]) -> list[str]:
    b = report.get("behaviour")
    if not b:
        return ["## 3. Behaviour", "", "Skipped (--behaviour-ticks 0).", ""]
    lines = [
        "## 3. Behaviour",
        "",
        f"A world of the {b['users']} evaluated users' training personas ran {b['ticks']} "
        f"ticks under `{b['policy']}` ({b['consumptions']} consumptions). Spearman rank "
        "correlation of each persona trait with an outcome, per user, in that world and in "
        "the held-out data (the same direction and size means the trait moves behaviour as "
        "it does in the data).",
        "",
        "| trait | outcome | data ρ | world ρ | users (data / world) |",
        "| --- | --- | ---: | ---: | ---: |",
    ]
    for c in b["correlations"]:
        lines.append(
            f"| {c['trait']} | {c['text']} | {_f(c['data'])} | {_f(c['world'])} | "
            f"{c['n_data']} / {c['n_world']} |"
        )
    return [*lines, ""]


def _hygiene_md(report: dict[str, Any]) -> list[str]:
    h = report["hygiene"]
    lines = ["## 4. Split hygiene", ""]
    for what, source in h["built_from"].items():
        lines.append(f"- {what.replace('_', ' ')}: {source}")
    lines += ["", "| check | count (0 = clean) |", "| --- | ---: |"]
    for name, count in h["checks"].items():
        lines.append(f"| {name.replace('_', ' ')} | {count} |")
    return [*lines, ""]


# ---------------------------------------------------------------------------- figures


def plot_report(report: dict[str, Any], folder: Path) -> list[Path]:
    """``taste.png``, ``ratings.png`` and (with a behaviour world) ``behaviour.png``."""
    folder.mkdir(parents=True, exist_ok=True)
    paths = [
        _plot_taste(report, folder / "taste.png"),
        _plot_ratings(report, folder / "ratings.png"),
    ]
    if report.get("behaviour"):
        paths.append(_plot_behaviour(report, folder / "behaviour.png"))
    return paths


def _save(fig: Any, path: Path) -> Path:
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return path


def _plot_taste(report: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(11, 6.5))
    axes = fig.subplots(2, 2, squeeze=False)
    for col, scheme in enumerate(("uniform", "popularity")):
        rows = [t for t in report["taste"] if t["scheme"] == scheme]
        for row, metric in enumerate(("accuracy", "auc")):
            ax = axes[row, col]
            models = list(rows[0]["models"]) if rows else []
            width = 0.8 / max(1, len(models))
            for j, model in enumerate(models):
                values = [t["models"][model][metric] for t in rows]
                x = np.arange(len(rows)) + j * width
                ax.bar(x, values, width, label=_name(report, model))
            ax.set_xticks(np.arange(len(rows)) + 0.4 - width / 2)
            ax.set_xticklabels([f"1:{t['ratio']}" for t in rows])
            ax.set_ylim(0, 1)
            ax.axhline(0.5, color="grey", lw=0.8, ls=":")
            ax.set_title(f"{metric} ({SCHEME_TEXT[scheme]})", fontsize=9)
            ax.grid(alpha=0.3, axis="y")
    handles, labels = axes[0, 0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="lower center", ncol=len(labels), fontsize=8)
    fig.suptitle(f"taste alignment: {report['persona']}", fontsize=10)
    fig.tight_layout(rect=(0, 0.05, 1, 1))
    fig.savefig(path, dpi=110)
    return path


def _plot_ratings(report: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure

    r = report["ratings"]
    series = [("held-out data", r["data"]), (str(report["persona"]), r["simulated"])]
    b = report.get("behaviour")
    if b and b.get("world_ratings"):
        series.append(("world (chosen items)", b["world_ratings"]))
    fig = Figure(figsize=(6.5, 4))
    ax = fig.subplots()
    width = 0.8 / len(series)
    for j, (name, dist) in enumerate(series):
        ax.bar(np.arange(1, 6) + (j - (len(series) - 1) / 2) * width, dist, width, label=name)
    ax.set_xlabel("stars")
    ax.set_ylabel("share")
    ax.set_title(
        f"ratings: TV {_f(r['total_variation'])}, JS {_f(r['jensen_shannon'], 4)} bits", fontsize=9
    )
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def _plot_behaviour(report: dict[str, Any], path: Path) -> Path:
    from matplotlib.figure import Figure

    rows = report["behaviour"]["correlations"]
    fig = Figure(figsize=(7, 4))
    ax = fig.subplots()
    x = np.arange(len(rows))
    ax.bar(x - 0.2, [np.nan_to_num(c["data"]) for c in rows], 0.4, label="held-out data")
    ax.bar(x + 0.2, [np.nan_to_num(c["world"]) for c in rows], 0.4, label="world")
    ax.set_xticks(x)
    ax.set_xticklabels([f"{c['trait']}\n{c['outcome']}" for c in rows], fontsize=7)
    ax.axhline(0, color="grey", lw=0.8)
    ax.set_ylabel("Spearman ρ")
    ax.set_title("behaviour: trait vs outcome rank correlations", fontsize=9)
    ax.legend(fontsize=7)
    ax.grid(alpha=0.3, axis="y")
    return _save(fig, path)


def summary_table(report: dict[str, Any]) -> str:
    """The headline numbers as text, for the command line."""
    lines = [f"{report['persona']}: " + provenance_line(report), ""]
    lines.append(f"{'setting':<26}{'model':<26}{'accuracy':>10}{'F1':>8}{'AUC':>8}")
    for t in report["taste"]:
        for model, m in t["models"].items():
            lines.append(
                f"{SCHEME_TEXT[t['scheme']].split()[0] + ' 1:' + str(t['ratio']):<26}"
                f"{_name(report, model)[:25]:<26}{_f(m['accuracy']):>10}{_f(m['f1']):>8}"
                f"{_f(m['auc']):>8}"
            )
    r = report["ratings"]
    share = r["share_1_2"]
    lines += [
        "",
        f"ratings: total variation {_f(r['total_variation'])}, Jensen-Shannon "
        f"{_f(r['jensen_shannon'], 4)} bits, 1-2 stars {_f(share['simulated'])} "
        f"(data {_f(share['data'])}), MAE {_f(r['errors']['persona']['mae'])}, "
        f"RMSE {_f(r['errors']['persona']['rmse'])}",
    ]
    return "\n".join(lines)
