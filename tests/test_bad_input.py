"""Bad input on the command line: every case prints exactly one line ``recloop: error: ...`` on
stderr, exits with code 2, prints no traceback, changes nothing outside ``--out`` and nothing
inside an existing run folder.

The cases run in-process through `simenv.cli.main` (fast); a handful also run as a real
``python -m simenv.cli`` process, to prove the format end to end.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import socket
import subprocess
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from simenv.cli import main
from simenv.studies.run_folder import OutputFolderError, check_output_folder

REPO = Path(__file__).resolve().parents[1]
TINY = ["--set", "ticks=2", "--set", "population.size=30", "--set", "catalog.n_items=60",
        "--no-progress"]  # fmt: skip


@dataclass(frozen=True)
class Case:
    """argv with placeholders: {run}, {run2} (finished run folders), {tmp} (the test's folder),
    {file} (a regular file in it), {bad_yaml}, {list_yaml}, {typo_yaml} (scenario files)."""

    argv: tuple[str, ...]
    message: str  # a part of the one line
    env: dict[str, str] = field(default_factory=dict)


def case(message: str, *argv: str, **env: str) -> Case:
    return Case(argv, message, env)


RUN = ("run", "filter_bubble", "--out", "{tmp}/out", *TINY)
#: a valid `recloop sweep` up to the option under test
SWEEP = ("sweep", "filter_bubble", "--seeds", "2", "--out", "{tmp}/s", *TINY)
# fmt: off
#: a valid `recloop train` up to the option under test
TRAIN_PPO = ("train", "ppo", "--env", "recloop/Session-v0", "--out", "{tmp}/t")

CASES: dict[str, Case] = {
    # --- the command line itself (argparse, in recloop's format)
    "unknown-command": case("invalid choice: 'nosuch'", "nosuch"),
    "unknown-option": case("unrecognized arguments: --nosuch", "--nosuch"),
    "run-no-scenario": case("required: scenario (see recloop run --help)", "run"),
    "run-seed-not-int": case("argument --seed: invalid int value: 'abc'", *RUN, "--seed", "abc"),
    "run-unknown-backend": case("invalid choice: 'nosuch'", *RUN, "--backend", "nosuch"),
    "run-unknown-decider": case("invalid choice: 'robot'", *RUN, "--decider", "robot"),
    "run-empty-out": case("argument --out: expected a path", "run", "filter_bubble", "--out", ""),
    "run-unknown-flag": case("unrecognized arguments: --fast", *RUN, "--fast"),
    "run-checkpoint-every-not-int": case(
        "argument --checkpoint-every: invalid int value: 'often'", *RUN, "--checkpoint-every",
        "often",
    ),
    "run-checkpoint-every-negative": case(
        "field 'checkpoint_every': Input should be greater than or equal to 0", *RUN,
        "--checkpoint-every", "-1",
    ),
    # --- run: the scenario and --set
    "run-unknown-scenario": case("unknown scenario 'nope'", "run", "nope", "--out", "{tmp}/o"),
    "run-missing-file": case("scenario file not found", "run", "{tmp}/missing.yaml"),
    "run-malformed-yaml": case("not valid YAML", "run", "{bad_yaml}", "--out", "{tmp}/o"),
    "run-yaml-not-mapping": case("expected a mapping", "run", "{list_yaml}", "--out", "{tmp}/o"),
    "run-yaml-unknown-field": case("unknown field", "run", "{typo_yaml}", "--out", "{tmp}/o"),
    "set-into-int": case("--set ticks.foo: 'ticks' is a value", *RUN, "--set", "ticks.foo=1"),
    "set-into-str": case("--set name.0: 'name' is a value", *RUN, "--set", "name.0=x"),
    "set-no-equals": case("--set expects dotted.key=value", *RUN, "--set", "oops"),
    "set-empty-key": case("--set expects dotted.key=value", *RUN, "--set", "=1"),
    "set-empty-part": case("empty name in the dotted key", *RUN, "--set", "a..b=1"),
    "set-wrong-type": case("field 'ticks'", *RUN, "--set", "ticks=many"),
    "set-bad-yaml": case("value is not valid YAML", *RUN, "--set", "ticks=[1"),
    "set-zero-ticks": case("field 'ticks'", *RUN, "--set", "ticks=0"),
    "set-negative-size": case("field 'population.size'", *RUN, "--set", "population.size=-5"),
    "set-unknown-field": case("unknown field", *RUN, "--set", "population.sise=5"),
    "metrics-every-zero": case("field 'metrics_every'", *RUN, "--set", "metrics_every=0"),
    "metrics-every-negative": case("field 'metrics_every'", *RUN, "--set", "metrics_every=-3"),
    "metrics-every-fraction": case("field 'metrics_every'", *RUN, "--set", "metrics_every=2.5"),
    "metrics-every-text": case("field 'metrics_every'", *RUN, "--set", "metrics_every=often"),
    "metrics-every-bool": case("field 'metrics_every'", *RUN, "--set", "metrics_every=true"),
    "set-index-out-of-range": case("out of range", *RUN, "--set", "policies.9.name=x"),
    "set-index-not-a-number": case("expected an index", *RUN, "--set", "policies.a=1"),
    "set-no-seeds": case("field 'seeds'", *RUN, "--set", "seeds=[]"),
    "set-repeated-seeds": case("seeds must differ", *RUN, "--set", "seeds=[0,0]"),
    "seed-twice": case("seeds must differ", *RUN, "--seed", "0", "--seed", "0"),
    "seed-negative": case("seeds must be 0 or more", *RUN, "--seed", "-1"),
    "slate-larger-than-catalog": case("slate_size", *RUN, "--set", "session.slate_size=5000"),
    "unknown-plot": case(
        "unknown metric 'ctx' in plots; did you mean 'ctr'", *RUN, "--set", "plots=[ctx]"
    ),
    "unknown-metric": case("unknown metric 'nope'", *RUN, "--set", "metrics=[ctr, nope]"),
    "unknown-graph": case("field 'social.graph'", *RUN, "--set", "social.graph=foo"),
    "bad-api-key-env": case("api_key_env", *RUN, "--set", "decider.llm.api_key_env=1bad"),
    "ml-population-synthetic-catalog": case(
        "needs catalog.source 'movielens'", *RUN, "--set", "population.source=movielens"
    ),
    "ml-population-too-large": case(
        "larger than the 943",
        "run",
        "popularity_bias",
        "--out",
        "{tmp}/o",
        "--set",
        "population.size=5000",
    ),
    # --- run: sizes that cannot fit
    "size-1e12-users": case("needs about", *RUN, "--set", "population.size=1000000000000"),
    "size-1e8-users": case("this machine has", *RUN, "--set", "population.size=100000000"),
    "size-1e10-items": case("items needs about", *RUN, "--set", "catalog.n_items=10000000000"),
    "size-huge-memory": case("needs about", *RUN, "--set", "session.memory=1000000000"),
    # --- run: policies
    "unknown-policy": case("unknown policy 'nope'", *RUN, "--policy", "nope"),
    "empty-policy": case("no policy name", *RUN, "--policy", ""),
    "policy-param-no-value": case("expected key=value", *RUN, "--policy", "explore:share"),
    "policy-param-empty": case("'share' has no value", *RUN, "--policy", "explore:share="),
    "policy-param-out-of-range": case(
        "share must be in [0, 1]", *RUN, "--policy", "explore:share=2"
    ),
    "policy-unknown-param": case("has no parameter 'nope'", *RUN, "--policy", "explore:nope=1"),
    "policy-param-twice": case("given twice", *RUN, "--policy", "explore:share=0.1,share=0.2"),
    "policy-empty-label": case("empty label", *RUN, "--policy", "explore@"),
    "policy-and-set-policies": case(
        "does not apply: --policy replaces",
        *RUN,
        "--policy",
        "explore",
        "--set",
        "policies.0.params={share: 0.25}",
    ),
    "policy-duplicate-labels": case(
        "policy labels must be unique",
        *RUN,
        "--policy",
        "explore:share=0.1",
        "--policy",
        "explore:share=0.2",
    ),
    "policy-labels-same-folder": case(
        "would share the part folder", *RUN, "--policy", "random@a b", "--policy", "popularity@a_b"
    ),
    "policy-wrong-param-type": case("policy 'mf'", *RUN, "--policy", "mf:factors=many"),
    "sb3-model-missing": case("model file not found", *RUN, "--policy", "sb3:{tmp}/m/model.zip"),
    "utility-missing": case("--utility: file not found", *RUN, "--utility", "{tmp}/u.yaml"),
    "utility-not-a-fit": case(
        "expected a mapping decider", *RUN, "--utility", "{run}/config.yaml"
    ),
    "openai-without-url": case(
        "base_url is required", *RUN, "--decider", "llm", "--backend", "openai"
    ),
    "openai-without-model": case(
        "model is required",
        *RUN,
        "--decider",
        "llm",
        "--backend",
        "openai",
        "--base-url",
        "http://127.0.0.1:9/v1",
    ),
    # --- run: --out and data
    "out-is-a-file": case("is a file, not a folder", "run", "filter_bubble", "--out", "{file}"),
    "out-under-a-file": case(
        "is a file, so no folder can be made under it",
        "run",
        "filter_bubble",
        "--out",
        "{file}/sub",
    ),
    "out-is-another-run": case(
        "different configuration",
        "run",
        "filter_bubble",
        "--out",
        "{run}",
        *TINY[:-1],
        "--set",
        "ticks=3",
        "--no-progress",
    ),
    "movielens-missing": case(
        "MovieLens-100k not found",
        "run",
        "popularity_bias",
        "--out",
        "{tmp}/o",
        RECLOOP_DATA="{tmp}/ml",
    ),
    "movielens-download-offline": case(
        "could not download MovieLens-100k from http://127.0.0.1",
        "run",
        "popularity_bias",
        "--download",
        "--out",
        "{tmp}/o",
        RECLOOP_DATA="{tmp}/ml",
        RECLOOP_MOVIELENS_URL="{closed_url}",
    ),
    # --- show, list
    "show-unknown": case("unknown scenario 'nope'", "show", "nope"),
    "show-set-into-int": case("'ticks' is a value", "show", "filter_bubble", "--set", "ticks.x=1"),
    "show-missing-argument": case("required: scenario", "show"),
    "show-out-of-range": case("field 'ticks'", "show", "filter_bubble", "--set", "ticks=-1"),
    "list-unknown": case("invalid choice: 'nope'", "list", "nope"),
    "list-extra-argument": case("unrecognized arguments: extra", "list", "scenarios", "extra"),
    # --- train (every check runs before any training)
    "train-missing-env": case("required: --env", "train", "ppo"),
    "train-unknown-algo": case(
        "unknown algorithm 'nope'",
        "train",
        "nope",
        "--env",
        "recloop/Session-v0",
        "--out",
        "{tmp}/t",
    ),
    "train-unknown-env": case(
        "unknown env 'nope/X-v0'", "train", "ppo", "--env", "nope/X-v0", "--out", "{tmp}/t"
    ),
    "train-zero-steps": case(
        "--steps must be positive",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--steps",
        "0",
        "--out",
        "{tmp}/t",
    ),
    "train-zero-envs": case(
        "--n-envs must be at least 1",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--n-envs",
        "0",
        "--out",
        "{tmp}/t",
    ),
    "train-env-kwargs-not-json": case(
        "argument --env-kwargs: not valid JSON",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--env-kwargs",
        "{bad",
    ),
    "train-env-kwargs-not-object": case(
        "expected a JSON object",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--env-kwargs",
        "[1]",
    ),
    "train-env-kwargs-unknown": case(
        "rejected its arguments",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--env-kwargs",
        '{"nope": 1}',
        "--out",
        "{tmp}/t",
    ),
    "train-unknown-scenario": case(
        "unknown scenario 'nope'",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--scenario",
        "nope",
        "--out",
        "{tmp}/t",
    ),
    "train-set-into-int": case(
        "'ticks' is a value",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--set",
        "ticks.x=1",
        "--out",
        "{tmp}/t",
    ),
    "train-dqn-multidiscrete": case(
        "dqn needs a Discrete action space",
        "train",
        "dqn",
        "--env",
        "recloop/Session-v0",
        "--out",
        "{tmp}/t",
    ),
    "train-algo-kwargs-unknown": case(
        "ppo has no argument 'nosuch'", *TRAIN_PPO, "--algo-kwargs", '{"nosuch": 1}'
    ),
    "train-algo-kwargs-reserved": case(
        "'seed' is set by recloop train", *TRAIN_PPO, "--algo-kwargs", '{"seed": 1}'
    ),
    "train-algo-kwargs-bad-value": case(
        "ppo rejected --algo-kwargs", *TRAIN_PPO, "--algo-kwargs", '{"learning_rate": "x"}'
    ),
    "train-zero-eval-episodes": case(
        "--eval-episodes must be at least 1", *TRAIN_PPO, "--eval-episodes", "0"
    ),
    "train-negative-checkpoint-freq": case(
        "--checkpoint-freq must be 0 (off) or positive", *TRAIN_PPO, "--checkpoint-freq", "-1"
    ),
    "run-env-without-sb3": case(
        "describe the env of --policy sb3:PATH models",
        "run", "filter_bubble", "--env", "recloop/Session-v0", "--out", "{tmp}/r",
    ),
    "train-out-is-a-file": case(
        "is a file, not a folder", "train", "ppo", "--env", "recloop/Session-v0", "--out", "{file}"
    ),
    "train-out-is-a-run": case(
        "is a run folder", "train", "ppo", "--env", "recloop/Session-v0", "--out", "{run}"
    ),
    "train-seed-not-int": case(
        "argument --seed: invalid int value",
        "train",
        "ppo",
        "--env",
        "recloop/Session-v0",
        "--seed",
        "x",
    ),
    # --- interview (every check runs before a model loads)
    "interview-no-user": case("required: --user", "interview", "{run}", "why?"),
    "interview-no-question": case("required: QUESTION", "interview", "{run}", "--user", "0"),
    "interview-no-run": case("does not exist", "interview", "{tmp}/nope", "--user", "0", "q"),
    "interview-not-a-run": case("is not a run folder", "interview", "{tmp}", "--user", "0", "q"),
    "interview-file": case("is not a run folder", "interview", "{file}", "--user", "0", "q"),
    "interview-unknown-user": case(
        "user 999 does not exist", "interview", "{run}", "--user", "999", "q"
    ),
    "interview-negative-user": case(
        "user -1 does not exist", "interview", "{run}", "--user", "-1", "q"
    ),
    "interview-user-not-int": case(
        "invalid int value: 'x'", "interview", "{run}", "--user", "x", "q"
    ),
    "interview-unknown-policy": case(
        "policy 'nope' is not in this run",
        "interview",
        "{run}",
        "--user",
        "0",
        "--policy",
        "nope",
        "q",
    ),
    "interview-unknown-seed": case(
        "seed 7 is not in this run", "interview", "{run}", "--user", "0", "--seed", "7", "q"
    ),
    "interview-empty-question": case(
        "the question is empty", "interview", "{run}", "--user", "0", " "
    ),
    "interview-zero-tokens": case(
        "--max-tokens must be at least 1",
        "interview",
        "{run}",
        "--user",
        "0",
        "--max-tokens",
        "0",
        "q",
    ),
    "interview-negative-memories": case(
        "--memories must be 0 (all) or more",
        "interview",
        "{run}",
        "--user",
        "0",
        "--memories",
        "-1",
        "q",
    ),
    "interview-openai-without-url": case(
        "base_url is required", "interview", "{run}", "--user", "0", "--backend", "openai", "q"
    ),
    # --- calibrate (every check runs before the LLM is asked)
    "calibrate-unknown-scenario": case("unknown scenario 'nope'", "calibrate", "nope"),
    "calibrate-zero-states": case(
        "--states must be at least 2",
        "calibrate",
        "filter_bubble",
        "--states",
        "0",
        "--out",
        "{tmp}/c",
    ),
    "calibrate-zero-ticks": case(
        "--ticks must be positive", "calibrate", "filter_bubble", "--ticks", "0", "--out", "{tmp}/c"
    ),
    "calibrate-explore-share": case(
        "--explore must be a share",
        "calibrate",
        "filter_bubble",
        "--explore",
        "2",
        "--out",
        "{tmp}/c",
    ),
    "calibrate-holdout-share": case(
        "--holdout must be a share",
        "calibrate",
        "filter_bubble",
        "--holdout",
        "1.5",
        "--out",
        "{tmp}/c",
    ),
    "calibrate-l2-word": case(
        "argument --l2: expected 'auto' or a number", "calibrate", "filter_bubble", "--l2", "x"
    ),
    "calibrate-l2-negative": case(
        "--l2 must be 'auto'", "calibrate", "filter_bubble", "--l2", "-1", "--out", "{tmp}/c"
    ),
    "calibrate-unknown-policy": case(
        "unknown policy 'nope'",
        "calibrate",
        "filter_bubble",
        "--policy",
        "nope",
        "--backend",
        "fake",
        "--out",
        "{tmp}/c",
    ),
    "calibrate-set-into-int": case(
        "'ticks' is a value", "calibrate", "filter_bubble", "--set", "ticks.a=1", "--out", "{tmp}/c"
    ),
    "calibrate-out-is-a-file": case(
        "is a file, not a folder",
        "calibrate",
        "filter_bubble",
        "--backend",
        "fake",
        "--out",
        "{file}",
    ),
    "calibrate-out-is-a-run": case(
        "is a run folder", "calibrate", "filter_bubble", "--backend", "fake", "--out", "{run}"
    ),
    "calibrate-unknown-backend": case(
        "invalid choice: 'nosuch'", "calibrate", "filter_bubble", "--backend", "nosuch"
    ),
    # --- compare
    "compare-one-run": case("at least two run folders", "compare", "{run}", "--out", "{tmp}/c"),
    "compare-same-run": case(
        "run labels must differ", "compare", "{run}", "{run}", "--out", "{tmp}/c"
    ),
    "compare-too-few-labels": case(
        "1 labels for 2 runs", "compare", "{run}", "{run2}", "--label", "a", "--out", "{tmp}/c"
    ),
    "compare-same-labels": case(
        "run labels must differ",
        "compare",
        "{run}",
        "{run2}",
        "--label",
        "a",
        "--label",
        "a",
        "--out",
        "{tmp}/c",
    ),
    "compare-empty-label": case(
        "argument --label: expected a name",
        "compare",
        "{run}",
        "{run2}",
        "--label",
        "",
        "--label",
        "b",
    ),
    "compare-missing-run": case(
        "is not a finished run folder", "compare", "{run}", "{tmp}/nope", "--out", "{tmp}/c"
    ),
    "compare-file-as-run": case(
        "is not a finished run folder", "compare", "{run}", "{file}", "--out", "{tmp}/c"
    ),
    "compare-into-a-run": case("is a run folder", "compare", "{run}", "{run2}", "--out", "{run}"),
    "compare-out-is-a-file": case(
        "is a file, not a folder", "compare", "{run}", "{run2}", "--out", "{file}"
    ),
    "compare-out-under-a-file": case(
        "so no folder can be made under it", "compare", "{run}", "{run2}", "--out", "{file}/x"
    ),
    "compare-empty-out": case(
        "argument --out: expected a path", "compare", "{run}", "{run2}", "--out", ""
    ),
    # --- report
    "report-no-path": case("required: PATH (see recloop report --help)", "report"),
    "report-missing": case("does not exist", "report", "{tmp}/nope"),
    "report-a-file": case("is a file, not a run or sweep folder", "report", "{file}"),
    "report-not-a-run": case("is not a run or sweep folder", "report", "{tmp}"),
    "report-unfinished-run": case("is an unfinished run", "report", "{unfinished}"),
    "report-out-is-a-folder": case("is a folder; name the HTML file", "report", "{run}",
                                   "--out", "{tmp}"),
    "report-out-under-a-file": case("cannot be written", "report", "{run}", "--out",
                                    "{file}/r.html"),
    "report-empty-out": case("argument --out: expected a path", "report", "{run}", "--out", ""),
    "report-bad-sweep-index": case("is not the index of a recloop sweep", "report", "{bad_sweep}"),
    # --- validate
    "validate-unknown-dataset": case(
        "unknown dataset 'nosuch'", "validate", "--dataset", "nosuch", "--out", "{tmp}/v"
    ),
    "validate-zero-users": case("--users must be at least 1", "validate", "--users", "0"),
    "validate-zero-ratio": case("--ratios must be positive", "validate", "--ratios", "0"),
    "validate-ratio-word": case("--ratios", "validate", "--ratios", "a,b", "--out", "{tmp}/v"),
    "validate-negative-max": case(
        "--max-per-user must be at least 1", "validate", "--max-per-user", "-1"
    ),
    "validate-unknown-decider": case("invalid choice: 'nosuch'", "validate", "--decider", "nosuch"),
    "validate-missing-utility": case(
        "--utility: file not found", "validate", "--utility", "{tmp}/nope.yaml", "--out", "{tmp}/v"
    ),
    "validate-out-is-a-file": case("is a file, not a folder", "validate", "--out", "{file}"),
    "validate-into-a-run": case("is a run folder", "validate", "--out", "{run}"),
    "validate-missing-data": case(
        "MovieLens-100k not found", "validate", "--data", "{tmp}/nodata", "--out", "{tmp}/v"
    ),
    # --- sweep (every setting is checked before anything runs)
    "sweep-unknown-grid-field": case("unknown field", *SWEEP, "--grid", "population.sise=1,2"),
    "sweep-grid-wrong-type": case(
        "setting s001 (ticks=many): ", *SWEEP, "--grid", "ticks=2,many"
    ),
    "sweep-grid-no-values": case("--grid ticks=: no values", *SWEEP, "--grid", "ticks="),
    "sweep-grid-empty-value": case("value 2: empty value", *SWEEP, "--grid", "ticks=1,,2"),
    "sweep-grid-twice": case("gridded twice", *SWEEP, "--grid", "ticks=1", "--grid", "ticks=2"),
    "sweep-grid-seeds": case("seeds are given by --seeds", *SWEEP, "--grid", "seeds=1,2"),
    "sweep-grid-not-scalar": case("is not a single value", *SWEEP, "--grid", "ticks={a: 1}"),
    "sweep-unknown-policy": case("unknown policy 'nosuch'", *SWEEP, "--grid", "policy=mf,nosuch"),
    "sweep-duplicate-setting": case(
        "are the same scenario", *SWEEP, "--grid", "policy=mf,random", "--setting", "policy=mf"
    ),
    "sweep-same-values": case("are the same scenario", *SWEEP, "--grid", "ticks=2,2.0"),
    "sweep-empty-setting": case("--setting: empty", *SWEEP, "--setting", " "),
    "sweep-setting-twice": case("given twice", *SWEEP, "--setting", "ticks=1,ticks=2"),
    "sweep-policy-and-set-policies": case(
        "the field 'policy' replaces", *SWEEP, "--grid", "policy=mf", "--set",
        "policies.0.name=random",
    ),
    "sweep-workers-zero": case("argument --workers: must be at least 1", *SWEEP, "--workers", "0"),
    "sweep-seeds-zero": case("argument --seeds: must be at least 1", *SWEEP, "--seeds", "0"),
    "sweep-seeds-and-seed": case("not allowed with argument", *SWEEP, "--seed", "1"),
    "sweep-ray-no-answer": case(
        "no Ray answers there", *SWEEP, "--ray-address", "{closed_addr}"
    ),
    "sweep-ray-bad-address": case("expected HOST:PORT", *SWEEP, "--ray-address", "nowhere"),
    "sweep-out-is-a-run": case(
        "is a run folder", "sweep", "filter_bubble", "--out", "{run}", *TINY
    ),
    "sweep-out-is-a-file": case(
        "is a file, not a folder", "sweep", "filter_bubble", "--out", "{file}", *TINY
    ),
    "sweep-into-another-sweep": case(
        "holds another sweep (grid.policy: ", "sweep", "filter_bubble", "--out", "{sweep}",
        "--seeds", "2", "--grid", "policy=random,mf", *TINY,
    ),
    "sweep-unknown-scenario": case("unknown scenario 'nope'", "sweep", "nope"),
    "run-into-a-sweep": case(
        "is a sweep folder", "run", "filter_bubble", "--out", "{sweep}", *TINY
    ),
    "compare-into-a-sweep": case(
        "is a sweep folder", "compare", "{run}", "{run2}", "--out", "{sweep}"
    ),
    # --- resume
    "resume-missing": case("does not exist: not a sweep folder", "resume", "{tmp}/nope"),
    "resume-not-a-run": case("has no sweep.json or config.yaml", "resume", "{tmp}"),
    "resume-run-with-workers": case(
        "apply to sweep folders", "resume", "{run}", "--workers", "2"
    ),
    "resume-not-a-sweep-json": case("is not the index of a recloop sweep", "resume", "{not_sweep}"),
    "resume-incomplete-sweep-json": case(
        "sweep.json is incomplete (no 'scenario')", "resume", "{half_sweep}"
    ),
    # --- fit
    "fit-unknown-dataset": case("unknown dataset 'nosuch'", "fit", "--dataset", "nosuch"),
    "fit-train-share": case("--train-share must be in (0, 1)", "fit", "--train-share", "2"),
    "fit-out-is-a-folder": case("must name", "fit", "--out", "{tmp}"),
    "fit-out-under-a-file": case(
        "so no folder can be made under it", "fit", "--out", "{file}/fitted.yaml"
    ),
}


def test_at_least_60_cases_over_every_subcommand():
    assert len(CASES) >= 60
    from simenv.cli import COMMANDS

    used = {c.argv[0] for c in CASES.values()}
    assert set(COMMANDS) <= used, f"no bad-input case for {set(COMMANDS) - used}"


@pytest.fixture(scope="module")
def runs(tmp_path_factory) -> dict[str, Path]:
    """Two finished tiny run folders, made once for the module."""
    root = tmp_path_factory.mktemp("runs")
    folders = {"run": root / "a", "run2": root / "b"}
    for name, folder in folders.items():
        policies = ["--policy", "random"] + (["--policy", "popularity"] if name == "run" else [])
        argv = ["run", "filter_bubble", "--out", str(folder), *TINY, *policies]
        assert main([*argv, "--set", "seeds=[0,1]"]) == 0
    folders["sweep"] = root / "s"  # a finished sweep: policy=popularity,random x seeds 0, 1
    grid = ["--grid", "policy=popularity,random", "--seeds", "2", "--set", "plots=[ctr]"]
    assert main(["sweep", "filter_bubble", "--out", str(folders["sweep"]), *TINY, *grid]) == 0
    return folders


def _closed_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (a port bound and released)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/ml-100k.zip"


@pytest.fixture
def places(tmp_path, runs, monkeypatch) -> dict[str, str]:
    """The placeholders of the cases; the test runs in ``tmp_path`` (default outputs land
    there, so the snapshot sees them)."""
    monkeypatch.chdir(tmp_path)
    (tmp_path / "afile").write_text("not a folder\n")
    (tmp_path / "bad.yaml").write_text("name: x\nticks: [1, 2\n")
    (tmp_path / "list.yaml").write_text("- a\n- b\n")
    (tmp_path / "typo.yaml").write_text("name: x\ntickz: 3\n")
    (tmp_path / "unfinished").mkdir()  # a run folder whose run has not finished
    shutil.copy(runs["run"] / "config.yaml", tmp_path / "unfinished" / "config.yaml")
    (tmp_path / "bad_sweep").mkdir()
    (tmp_path / "bad_sweep" / "sweep.json").write_text('{"kind": "other"}\n')
    not_sweep = tmp_path / "notsweep"
    not_sweep.mkdir()
    (not_sweep / "sweep.json").write_text('{"kind": "something else"}\n')
    half_sweep = tmp_path / "halfsweep"
    half_sweep.mkdir()
    (half_sweep / "sweep.json").write_text('{"kind": "recloop-sweep"}\n')
    return {
        "tmp": str(tmp_path),
        "file": str(tmp_path / "afile"),
        "bad_yaml": str(tmp_path / "bad.yaml"),
        "list_yaml": str(tmp_path / "list.yaml"),
        "typo_yaml": str(tmp_path / "typo.yaml"),
        "unfinished": str(tmp_path / "unfinished"),
        "bad_sweep": str(tmp_path / "bad_sweep"),
        "closed_url": _closed_url(),
        "closed_addr": _closed_url().split("/")[2],
        "not_sweep": str(not_sweep),
        "half_sweep": str(half_sweep),
        **{k: str(v) for k, v in runs.items()},
    }


def snapshot(root: Path, skip: Path | None = None) -> dict[str, str]:
    """Every file and folder under ``root`` (except ``skip``) with a digest of its bytes."""
    out = {}
    for path in sorted(root.rglob("*")):
        if skip is not None and (path == skip or skip in path.parents):
            continue
        rel = str(path.relative_to(root))
        out[rel] = "dir" if path.is_dir() else hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def _out_of(argv: list[str]) -> Path | None:
    return Path(argv[argv.index("--out") + 1]) if "--out" in argv else None


def _expand(c: Case, places: dict[str, str]) -> tuple[list[str], dict[str, str]]:
    def fill(text: str) -> str:
        for key, value in places.items():
            text = text.replace("{" + key + "}", value)
        return text

    return [fill(a) for a in c.argv], {k: fill(v) for k, v in c.env.items()}


def check_one_line(err: str, message: str) -> None:
    assert "Traceback" not in err, err
    assert err.startswith("recloop: error: "), err
    assert err.count("\n") == 1 and err.endswith("\n"), err
    assert message in err, err


@pytest.mark.parametrize("name", list(CASES))
def test_bad_input(name, places, runs, tmp_path, capsys, monkeypatch):
    argv, env = _expand(CASES[name], places)
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    out = _out_of(argv)
    skip = out if out is not None and tmp_path in out.parents else None
    before = snapshot(tmp_path, skip)
    runs_before = {k: snapshot(v) for k, v in runs.items()}
    code = main(argv)
    captured = capsys.readouterr()
    assert code == 2, captured
    check_one_line(captured.err, CASES[name].message)
    assert snapshot(tmp_path, skip) == before, "changed something outside --out"
    assert {k: snapshot(v) for k, v in runs.items()} == runs_before, "changed a run folder"


SUBPROCESS_CASES = [
    "run-seed-not-int",
    "set-into-int",
    "out-under-a-file",
    "size-1e12-users",
    "policy-and-set-policies",
    "movielens-download-offline",
    "train-env-kwargs-not-json",
    "compare-into-a-run",
    "report-not-a-run",
    "sweep-grid-wrong-type",
    "sweep-ray-no-answer",
]


@pytest.mark.parametrize("name", SUBPROCESS_CASES)
def test_bad_input_in_a_real_process(name, places, runs, tmp_path):
    argv, env = _expand(CASES[name], places)
    before = {k: snapshot(v) for k, v in runs.items()}
    full_env = {**os.environ, "PYTHONPATH": str(REPO), "MPLBACKEND": "Agg", **env}
    done = subprocess.run(
        [sys.executable, "-m", "simenv.cli", *argv],
        capture_output=True,
        text=True,
        env=full_env,
        cwd=tmp_path,
        timeout=300,
    )
    assert done.returncode == 2, done.stderr
    check_one_line(done.stderr, CASES[name].message)
    assert {k: snapshot(v) for k, v in runs.items()} == before


def test_debug_still_shows_the_traceback_of_a_usage_error_free_case(places):
    with pytest.raises(ValueError, match="'ticks' is a value"):
        main(["--debug", "show", "filter_bubble", "--set", "ticks.x=1"])


# --- output folders ------------------------------------------------------------------------


def test_output_folder_checks(tmp_path, runs):
    afile = tmp_path / "afile"
    afile.write_text("x")
    assert check_output_folder(tmp_path / "new" / "deeper") == tmp_path / "new" / "deeper"
    assert not (tmp_path / "new").exists()  # checking creates nothing
    with pytest.raises(OutputFolderError, match="is a file, not a folder"):
        check_output_folder(afile)
    with pytest.raises(OutputFolderError, match="so no folder can be made under it"):
        check_output_folder(afile / "a" / "b")
    assert check_output_folder(runs["run"]) == runs["run"]  # `recloop run` resumes there
    with pytest.raises(OutputFolderError, match="is a run folder"):
        check_output_folder(runs["run"], into_run=False)


def test_an_unwritable_output_folder_is_one_line(tmp_path, capsys):
    """As root, permission bits do not stop us: /proc/sys is not writable even for root."""
    if os.geteuid() == 0:
        target = Path("/proc/sys/recloop-test")
        if not Path("/proc/sys").is_dir() or os.access("/proc/sys", os.W_OK):
            pytest.skip("no folder that root cannot write on this machine")
    else:
        locked = tmp_path / "locked"
        locked.mkdir(mode=0o500)
        target = locked / "out"
    assert main(["run", "filter_bubble", "--out", str(target), *TINY]) == 2
    check_one_line(capsys.readouterr().err, "is not writable")


def test_the_file_system_refusing_late_is_one_line_too(tmp_path, capsys, monkeypatch):
    """What the checks cannot see (a disk that fills up, a folder that turns read-only
    under us) still gives one line, not a traceback."""
    import simenv.studies.run_folder as rf

    def refuse(folder):
        raise PermissionError(13, "Permission denied", str(folder))

    monkeypatch.setattr(rf, "folder_lock", refuse)
    assert main(["run", "filter_bubble", "--out", str(tmp_path / "o"), *TINY]) == 2
    check_one_line(capsys.readouterr().err, f"Permission denied: {tmp_path / 'o'}")


def test_a_folder_that_takes_no_files_is_refused_before_the_work(tmp_path, monkeypatch):
    """Permission bits say yes to root everywhere; /proc still takes no new file. `recloop fit`
    refused such an --out only after fitting (about 20 s); now before, and the check leaves no
    file behind where it succeeds."""
    from simenv.studies import fit as fit_module

    if not Path("/proc/self").is_dir():
        pytest.skip("no /proc on this machine")
    with pytest.raises(OutputFolderError, match=r"--out /proc/x: /proc is not writable \("):
        check_output_folder(Path("/proc/x"))

    def no_fitting(*args, **kwargs):
        raise AssertionError("fitted before the output was checked")

    monkeypatch.setattr(fit_module, "fit", no_fitting)
    config = fit_module.FitConfig(dataset="movielens-100k", out=Path("/proc/x.yaml"))
    with pytest.raises(OutputFolderError, match="/proc"):
        fit_module.run_fit(config, progress=False)
    check_output_folder(tmp_path / "fresh")
    assert list(tmp_path.iterdir()) == []
