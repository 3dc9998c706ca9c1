"""`recloop report`: one static report.html of a run folder or a sweep folder.

The browser test renders the page in headless Chromium (Debian package ``chromium``; the
Makefile's dev install adds it where apt-get is usable) and reads back what the page's own
script found: every figure decoded. Without Chromium it is skipped, except under CI=true,
where that is a failure.
"""

from __future__ import annotations

import base64
import json
import os
import re
import shutil
import subprocess
from pathlib import Path

import pandas as pd
import pytest
from sweep_folder import TINY, make_sweep

from scenarios import load as load_scenario
from simenv.cli import main
from simenv.studies.report import metric_columns, metric_figure, summary_rows, write_report
from simenv.studies.results import load
from simenv.studies.runner import run_scenario, t95

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "run"
    sc = load_scenario("filter_bubble", [*TINY, "seeds=[0, 1, 2]"])
    sc = sc.model_copy(update={"policies": sc.policies[:3]})
    run_scenario(sc, out, progress=False)
    return out


@pytest.fixture(scope="module")
def sweep(tmp_path_factory: pytest.TempPathFactory) -> Path:
    grid = {"policy": ["random", "popularity"], "population.drift": [0.0, 0.2]}
    return make_sweep(tmp_path_factory.mktemp("report") / "sweep", grid, seeds=[0, 1])


@pytest.fixture(scope="module")
def llm_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("report") / "llm"
    sets = ["ticks=2", "population.size=6", "population.activity_scale=5", "catalog.n_items=30",
            "decider.llm.embeddings=topics"]  # fmt: skip
    args = ["run", "filter_bubble_llm", "--backend", "fake", "--out", str(out), "--no-progress",
            "--policy", "popularity", "--policy", "mf"]  # fmt: skip
    assert main(args + [x for kv in sets for x in ("--set", kv)]) == 0
    return out


def images(page: str) -> list[bytes]:
    return [base64.b64decode(m) for m in re.findall(r'src="data:image/png;base64,([^"]+)"', page)]


def external_references(page: str) -> list[str]:
    """Every src/href/url() that is not inline data or an anchor on the page."""
    refs = re.findall(r'(?:src|href)\s*=\s*"([^"]*)"', page) + re.findall(r"url\(([^)]*)\)", page)
    return [r for r in refs if not (r.startswith("data:") or r.startswith("#"))]


def test_report_of_a_run(run: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["report", str(run)]) == 0
    assert "report.html" in capsys.readouterr().out
    page = (run / "report.html").read_text()
    res = load(run, interactions=False)
    names = metric_columns(res)
    assert names and "ctr" in names and "tick" not in names and "seed" not in names
    figures = images(page)
    assert len(figures) == len(names) and all(f.startswith(PNG) for f in figures)
    for name in names:
        assert f'id="fig-{name}"' in page
    assert external_references(page) == []
    assert "Content-Security-Policy" in page and "default-src 'none'" in page
    # the configuration and provenance, as written by the run
    assert "population:" in page and "filter_bubble" in page
    assert json.loads((run / "made_with.json").read_text())["recloop"] in page
    assert "no LLM cost" in page
    for a, b in [("random", "popularity"), ("random", "mf"), ("popularity", "mf")]:
        assert f"{b} − {a}" in page


def test_paired_differences_are_per_seed(run: Path) -> None:
    res = load(run, interactions=False)
    policies, rows = summary_rows(res.metrics, ["ctr"])
    assert policies == ["random", "popularity", "mf"]
    m = res.metrics
    per_seed = m.groupby(["policy", "seed"])["ctr"].mean().unstack("policy")
    diff = per_seed["mf"] - per_seed["random"]
    got = rows[0][("diff", "random", "mf")]["mean"]
    mean, low, high, n = got["mean"], got["low"], got["high"], got["n"]
    half = t95(2) * diff.std(ddof=1) / 3**0.5
    assert (mean, low, high, n) == pytest.approx((diff.mean(), diff.mean() - half,
                                                  diff.mean() + half, 3))  # fmt: skip
    last = m[m["tick"] == m["tick"].max()].set_index(["policy", "seed"])["ctr"]
    final = rows[0]["popularity"]["final"]
    assert final["mean"] == pytest.approx(last["popularity"].mean()) and final["n"] == 3


def test_time_axes_have_integer_ticks(run: Path) -> None:
    res = load(run, interactions=False)
    fig = metric_figure(res, "ctr")
    for ax in fig.axes:
        ticks = [t for t in ax.get_xticks() if ax.get_xlim()[0] <= t <= ax.get_xlim()[1]]
        assert ticks and all(float(t).is_integer() for t in ticks)


def test_report_of_a_sweep(sweep: Path, tmp_path: Path) -> None:
    out = tmp_path / "sub" / "r.html"
    report = write_report(sweep, out)
    assert report.path == out and report.settings == 4
    page = out.read_text()
    assert len(images(page)) == report.figures == len(report.metrics)
    # a table per value of the swept field other than policy, pairs across the policy grid
    assert "<h3>population.drift=0.0</h3>" in page and "<h3>population.drift=0.2</h3>" in page
    assert "popularity − random" in page
    assert "sweep.json" in page and "s003" in page
    assert not (sweep / "report.html").exists()


def test_report_shows_the_llm_cost(llm_run: Path) -> None:
    page = write_report(llm_run).path.read_text()
    summary = json.loads((llm_run / "summary.json").read_text())["llm"]
    assert f"{summary['decisions']} LLM decisions over {summary['jobs']} job(s)" in page
    assert "prompt_tokens" in page and "FakeBackend" in page
    # the backend row sums the jobs' own calls (each job's llm_stats.json counts only its own)
    jobs = [json.loads(p.read_text()) for p in sorted(llm_run.glob("parts/*/llm_stats.json"))]
    calls = [next(x for x in j["layers"] if x["layer"] == "FakeBackend")["stats"]["calls"]
             for j in jobs]  # fmt: skip
    assert len(calls) == 2 and all(n > 0 for n in calls)
    row = re.search(r"<tr><td>FakeBackend \([^)]*\)</td><td>([^<]*)</td>", page)
    assert row is not None and float(row.group(1).replace(",", "")) == sum(calls)


def test_report_writes_nothing_on_bad_input(run: Path, tmp_path: Path) -> None:
    (tmp_path / "afile").write_text("x")
    before = sorted(p.name for p in tmp_path.iterdir())
    assert main(["report", str(tmp_path)]) == 2
    assert main(["report", str(run), "--out", str(tmp_path)]) == 2
    assert main(["report", str(run), "--out", str(tmp_path / "afile" / "r.html")]) == 2
    assert sorted(p.name for p in tmp_path.iterdir()) == before


# ---------------------------------------------------------------- in a browser


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    reason = (
        "Chromium is not installed (Debian: apt-get install chromium, or `make install-dev`); "
        "the report is not rendered in a browser"
    )
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(reason, pytrace=False)
    pytest.skip(reason)


def rendered_body(page: Path, profile: Path) -> str:
    """The ``<body>`` tag of ``page`` after headless Chromium loaded it and ran its script."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--no-first-run",
         f"--user-data-dir={profile}", "--virtual-time-budget=10000", "--dump-dom",
         page.resolve().as_uri()],
        capture_output=True, text=True, timeout=180,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr[-2000:]
    body = re.search(r"<body[^>]*>", done.stdout)
    assert body, done.stdout[:2000]
    return body.group(0)


@pytest.mark.parametrize("which", ["run", pytest.param("sweep", marks=pytest.mark.slow)])
def test_every_figure_shows_in_chromium(which: str, run: Path, sweep: Path, tmp_path: Path) -> None:
    report = write_report(run if which == "run" else sweep, tmp_path / "report.html")
    body = rendered_body(report.path, tmp_path / "profile")
    assert 'data-figures="ok"' in body, body
    assert f'data-figures-decoded="{report.figures}"' in body, body
    assert f'data-figures-expected="{report.figures}"' in body


def test_a_broken_figure_is_caught_in_chromium(run: Path, tmp_path: Path) -> None:
    """The check can fail: a figure whose bytes are not an image is reported broken."""
    page = write_report(run, tmp_path / "report.html").path
    text = page.read_text()
    first = re.search(r"data:image/png;base64,([^\"]+)", text)
    assert first
    page.write_text(text.replace(first.group(1), base64.b64encode(b"not a png").decode(), 1))
    body = rendered_body(page, tmp_path / "profile")
    assert 'data-figures="broken"' in body, body


def test_summary_table_matches_load(run: Path) -> None:
    """The report and `load` read the same rows (what a user plots is what the report shows)."""
    res = load(run, interactions=False)
    assert isinstance(res.metrics, pd.DataFrame)
    assert metric_columns(res) == [
        c for c in res.metrics.columns if c not in ("policy", "seed", "tick")
    ]
