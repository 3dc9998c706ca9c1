"""LLM backends benchmark: persona decisions per second, batched vs one prompt at a time, and
prompt tokens actually computed per decision with and without prefix caching; and real world
ticks with the LLM decider against the same backend's rate for one question per decision.

    python benchmarks/llm.py                          # 64 users x 4 ticks, every available backend
    python benchmarks/llm.py --users 64 --ticks 4 --single 16 --json out.json
    python benchmarks/llm.py --parts world --users 16 --world-ticks 3 --backends transformers,vllm

World part (``--parts world``): ``--world-ticks`` ticks of `filter_bubble_llm` (``--users``
users, all active, ``--world-steps`` slates a session, mf, calibration off: its content-free
prompts are a one-off per persona) run twice on the same engine, each from a cold prefix cache
(``reset_prefix_cache``): with the `LLMDecider`'s questions (choice, then the stars and
stay/leave as the rest of one answer to the choice prompt, prompts v4), and with the choice question
alone (`ChoiceOnly`: the backend's rate for one question per decision on the same world). Per
tick it prints decisions/s, prompts and prompt tokens per decision, tokens computed (not served
from the prefix cache) and the prefix-cache hit rate; then per backend tick 1 vs ticks 2+ and
the ratio of the two runs; and per question (choice, stars, stay/leave) the ``score`` calls,
requests, prompt tokens computed per request, seconds per request and per computed token.

Synthetic part (``--parts synthetic``):
Each user's prompt (~220 tokens with the chat template) is persona (fixed per user) + memories
(one line added per tick, so earlier ones are a shared prefix) + the tick's slate of 5 items;
one decision = one ``score`` of the labels 1-5. Tick 1 meets cold caches (every persona is new);
later ticks can reuse each user's persona + older memories from the prefix cache. "computed"
= prompt tokens - prompt tokens served from the prefix cache. "one at a time" times ``--single``
users of the last tick, one ``score`` call each. Every configuration runs in its own subprocess
(one engine each). Backends: transformers (always), vllm with and without prefix caching when
``import vllm`` works. On a GPU machine the same command uses CUDA (transformers on cuda, vLLM's
CUDA build); on CPU set nothing: the script sets VLLM_CPU_NUM_OF_RESERVED_CPU=0 and
VLLM_ENABLE_V1_MULTIPROCESSING=0 unless they are set.
"""

from __future__ import annotations

import argparse
import importlib.util
import json
import os
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

GENRES = ["science fiction", "romance", "horror", "documentary", "comedy", "drama", "action"]
JOBS = ["nurse", "teacher", "engineer", "student", "chef", "lawyer", "farmer", "painter"]
CITIES = ["Porto", "Lyon", "Osaka", "Lagos", "Quito", "Leeds", "Pune", "Graz"]
ADJ = ["quiet", "loud", "slow", "witty", "dark", "warm", "epic", "odd"]
NOUN = ["river", "robot", "castle", "kitchen", "planet", "court", "harvest", "canvas"]


def persona(u: int) -> str:
    likes = GENRES[u % 7]
    dislikes = GENRES[(u * 3 + 2) % 7]
    return (
        f"You are user {u}, a {20 + u % 50}-year-old {JOBS[u % 8]} from {CITIES[(u // 8) % 8]}. "
        f"You love {likes} and {GENRES[(u + 3) % 7]}, you dislike {dislikes}. You watch films "
        "in the evening, mostly alone, sometimes with friends who prefer action. You rate "
        "films honestly, you get bored by long films and you like surprising endings. "
        "Answer every question in character."
    )


def title(u: int, t: int, k: int) -> str:
    return f"The {ADJ[(u + t + k) % 8]} {NOUN[(u * 5 + t * 3 + k) % 8]}"


def memories(u: int, tick: int) -> str:
    lines = [
        f"- Day {t + 1}: you watched '{title(u, t, 9)}' ({GENRES[(u + t) % 7]}) and "
        f"{'liked' if (u + t) % 3 else 'disliked'} it."
        for t in range(tick + 2)
    ]
    return "Your memories:\n" + "\n".join(lines)


def slate(u: int, tick: int) -> str:
    items = [
        f"{k + 1}. '{title(u, tick, k)}', a {GENRES[(u + tick + k) % 7]} film" for k in range(5)
    ]
    return "Tonight's recommendations:\n" + "\n".join(items) + "\nWhich one do you watch? Number:"


def user_prompt(u: int, tick: int) -> str:
    return memories(u, tick) + "\n\n" + slate(u, tick)


LABELS = ["1", "2", "3", "4", "5"]


def make(name: str, args: argparse.Namespace) -> Any:
    if name == "transformers":
        import torch

        from simenv.llm.transformers_backend import TransformersBackend

        device = "cuda" if torch.cuda.is_available() else "cpu"
        return TransformersBackend(device=device, batch_size=args.tf_batch_size, dtype=args.dtype)
    from simenv.llm.vllm_backend import VLLMBackend

    kw: dict[str, Any] = {"enforce_eager": args.enforce_eager}
    if args.block_size:
        kw["block_size"] = args.block_size
    return VLLMBackend(dtype=args.dtype, enable_prefix_caching=name == "vllm", **kw)


def run_one(name: str, args: argparse.Namespace) -> dict[str, Any]:
    """One configuration in this process; returns its measurements."""
    t0 = time.perf_counter()
    b = make(name, args)
    load = time.perf_counter() - t0

    # warm-up on unrelated prompts (first-call kernel set-up), not counted
    b.score([b.chat_prompt("You are a test.", "Pick:\n1. a\n2. b\nNumber:")] * 2, [["1", "2"]] * 2)
    out: dict[str, Any] = {"config": name, "load_seconds": load}
    if "synthetic" in args.parts:
        out.update(synthetic(b, args))
    if "world" in args.parts and args.world_ticks:
        # one question per decision first, then the decider's questions (each from a cold
        # prefix cache): the same engine, the same world, the same seed
        out["world_one"], out["calls_one"] = world_ticks(b, args, "choice")
        out["world"], out["calls"] = world_ticks(b, args, "all")
    return out


def synthetic(b: Any, args: argparse.Namespace) -> dict[str, Any]:
    """The synthetic prompts: ``--ticks`` batched ticks and ``--single`` prompts one by one."""

    def chat(u: int, tick: int) -> str:
        return str(b.chat_prompt(persona(u), user_prompt(u, tick)))

    lengths = [len(b._tok.encode(chat(u, 0))) for u in range(args.users)]
    ticks = []
    for tick in range(args.ticks):
        prompts = [chat(u, tick) for u in range(args.users)]
        s0 = b.stats.as_dict()
        t = time.perf_counter()
        probs = b.score(prompts, [LABELS] * len(prompts))
        dt = time.perf_counter() - t
        s1 = b.stats.as_dict()
        assert all(np.isclose(p.sum(), 1.0) for p in probs)
        tok = s1["prompt_tokens"] - s0["prompt_tokens"]
        cached = s1["cached_prompt_tokens"] - s0["cached_prompt_tokens"]
        ticks.append({"seconds": dt, "tokens": tok, "cached": cached})
    # one prompt at a time: a further tick for the first --single users
    tick = args.ticks
    s0 = b.stats.as_dict()
    t = time.perf_counter()
    for u in range(args.single):
        b.score([chat(u, tick)], [LABELS])
    single_dt = time.perf_counter() - t
    s1 = b.stats.as_dict()
    single_cached = s1["cached_prompt_tokens"] - s0["cached_prompt_tokens"]
    single_tok = s1["prompt_tokens"] - s0["prompt_tokens"]
    return {
        "prompt_tokens_mean": float(np.mean(lengths)),
        "ticks": ticks,
        "single": {"seconds": single_dt, "n": args.single, "tokens": single_tok},
        "single_cached": single_cached,
    }


class ChoiceOnly:
    """An `LLMDecider` asking the choice question alone (one ``score`` call per decision); the
    rating and stay/leave come from its utility fallback. The world run with it gives the
    backend's rate for one question per decision on the world's own prompts."""

    def __init__(self, decider: Any) -> None:
        self.inner = decider

    def __getattr__(self, name: str) -> Any:
        return getattr(self.inner, name)

    def decide(self, ctx: Any) -> Any:
        from agents.deciders import Decisions

        d = self.inner
        probs = d.choice_probabilities(ctx)
        fb = d.fallback.decide(ctx)
        u = ctx.rng.random(ctx.users.size)
        cdf = np.cumsum(np.nan_to_num(probs, nan=1.0 / probs.shape[1]), axis=1)
        cdf[:, -1] = 1.0
        pick = (cdf < u[:, None]).sum(axis=1)
        k = ctx.slates.shape[1]
        chosen = np.where(pick < k, pick, -1).astype(np.int64)
        rating = np.where(chosen >= 0, fb.rating, np.nan).astype(np.float32)
        return Decisions(chosen_pos=chosen, rating=rating, ended_session=fb.ended_session)


def question_of(labels: list[str]) -> str:
    """The decider's question a ``score`` call asks, told by its option labels."""
    if labels[-1] == "none":
        return "choice"
    return "stars" if labels[0] == "1" else "stay/leave"


def call_log(b: Any) -> Any:
    """``b`` in a wrapper that records every ``score`` call: the question (`question_of`), its
    requests, the prompt tokens ``b`` computed (not served from its prefix cache) and seconds."""
    from simenv.llm.base import BackendStats
    from simenv.llm.wrappers import Wrapper

    class CallLog(Wrapper):
        def __init__(self) -> None:
            self.inner = b
            self.stats = BackendStats()
            self.calls: list[dict[str, Any]] = []

        def score(self, prompts: Any, options: Any) -> Any:
            st = b.stats
            tokens, cached, t = st.prompt_tokens, st.cached_prompt_tokens, time.perf_counter()
            out = b.score(prompts, options)
            computed = (st.prompt_tokens - tokens) - (st.cached_prompt_tokens - cached)
            self.calls.append(
                {
                    "question": question_of(list(options[0])),
                    "requests": len(prompts),
                    "computed": computed,
                    "seconds": time.perf_counter() - t,
                }
            )
            return out

        def generate(self, prompts: Any, max_tokens: int, json_schema: Any = None) -> Any:
            return b.generate(prompts, max_tokens, json_schema)

    return CallLog()


def world_ticks(
    b: Any, args: argparse.Namespace, questions: str
) -> tuple[list[dict[str, float]], list[dict[str, Any]]]:
    """Real ticks of `filter_bubble_llm` (``--users`` users, all active, mf) with `LLMDecider`
    on ``b`` (``questions="all"``: choice, rating, stay/leave as the decider asks them; or
    ``"choice"``: `ChoiceOnly`): one entry per tick (decisions, seconds, backend seconds,
    prompt tokens and prompt tokens served from the prefix cache) and one per ``score`` call
    (`call_log`). The backend's prefix cache is emptied first, so tick 1 meets it cold."""
    import policies
    from scenarios import load
    from simenv.studies.factory import make_decider
    from simenv.world import World

    # the per-decision cost: contextual calibration's content-free prompts are a one-off per
    # persona and question kind (3 prompts each), left out here
    scenario = load(
        "filter_bubble_llm",
        [
            f"population.size={args.users}",
            "population.activity_scale=50",
            f"session.max_steps={args.world_steps}",
            "decider.llm.calibration=none",
        ],
    )
    logged = call_log(b)
    inner = make_decider(scenario, backend=logged)
    decider = ChoiceOnly(inner) if questions == "choice" else inner
    decisions = 0
    decide = decider.decide

    def counted(ctx: Any) -> Any:
        nonlocal decisions
        decisions += int(ctx.users.size)
        return decide(ctx)

    decider.decide = counted
    world = World(scenario, policies.make("mf"), seed=0, decider=decider)
    b.reset_prefix_cache()
    ticks = []
    for _ in range(args.world_ticks):
        s0, d0 = b.stats.as_dict(), decisions
        t = time.perf_counter()
        world.step()
        s1 = b.stats.as_dict()
        ticks.append(
            {
                "seconds": time.perf_counter() - t,
                "backend_seconds": s1["seconds"] - s0["seconds"],
                "decisions": decisions - d0,
                "prompts": s1["prompts"] - s0["prompts"],
                "tokens": s1["prompt_tokens"] - s0["prompt_tokens"],
                "cached": s1["cached_prompt_tokens"] - s0["cached_prompt_tokens"],
            }
        )
    return ticks, logged.calls


def summarise(r: dict[str, Any], users: int) -> dict[str, Any]:
    first, later = r["ticks"][0], r["ticks"][1:]

    def per_dec(ts: list[dict[str, Any]]) -> tuple[float, float, float]:
        n = users * len(ts)
        sec = sum(x["seconds"] for x in ts)
        tok = sum(x["tokens"] for x in ts)
        cached = sum(x["cached"] for x in ts)
        return n / sec, (tok - cached) / n, cached / max(tok, 1)

    f = per_dec([first])
    later_s = per_dec(later) if later else (float("nan"),) * 3
    return {
        "config": r["config"],
        "prompt_tok": r["prompt_tokens_mean"],
        "dec_s_tick1": f[0],
        "dec_s_later": later_s[0],
        "dec_s_single": r["single"]["n"] / r["single"]["seconds"],
        "computed_tick1": f[1],
        "computed_later": later_s[1],
        "hit_tick1": f[2],
        "hit_later": later_s[2],
        "load_s": r["load_seconds"],
    }


def table(rows: list[dict[str, Any]]) -> str:
    head = (
        f"{'backend':<22}{'tok/prompt':>11}{'dec/s t1':>10}{'dec/s t2+':>10}{'dec/s 1-by-1':>13}"
        f"{'computed/dec t1':>16}{'t2+':>7}{'hit t1':>8}{'hit t2+':>8}{'load s':>8}"
    )
    lines = [head, "-" * len(head)]
    for s in rows:
        lines.append(
            f"{s['config']:<22}{s['prompt_tok']:>11.0f}{s['dec_s_tick1']:>10.1f}"
            f"{s['dec_s_later']:>10.1f}{s['dec_s_single']:>13.1f}{s['computed_tick1']:>16.0f}"
            f"{s['computed_later']:>7.0f}{s['hit_tick1']:>8.0%}{s['hit_later']:>8.0%}"
            f"{s['load_s']:>8.1f}"
        )
    return "\n".join(lines)


def rate(ts: list[dict[str, Any]]) -> tuple[float, float, float]:
    """Decisions per second, prefix-cache hit rate and prompt tokens computed per decision over
    the ticks ``ts``."""
    dec = sum(t["decisions"] for t in ts)
    sec = sum(t["seconds"] for t in ts)
    tok = sum(t["tokens"] for t in ts)
    cached = sum(t["cached"] for t in ts)
    return dec / sec if sec else float("nan"), cached / max(tok, 1), (tok - cached) / max(dec, 1)


def world_table(results: list[dict[str, Any]]) -> str:
    """Per tick: the world's decisions/s with the decider's questions and with one question per
    decision, prompts and tokens computed per decision, prefix-cache hit rate; then per backend
    tick 1 vs ticks 2+, their ratio and the ratio to the one-question rate, and the same ratios
    of prompt tokens computed per decision (inverted: what the decisions/s ratios would be if
    time followed computed tokens; they do not depend on the machine's load)."""
    head = (
        f"{'backend':<22}{'questions':>10}{'tick':>5}{'dec':>5}{'dec/s':>8}{'prompts/dec':>12}"
        f"{'tok/dec':>8}{'computed/dec':>13}{'hit':>6}{'outside':>8}"
    )
    lines = [head, "-" * len(head)]
    for r in results:
        for kind, key in (("one", "world_one"), ("all", "world")):
            for i, t in enumerate(r.get(key) or []):
                d = max(t["decisions"], 1)
                lines.append(
                    f"{r['config']:<22}{kind:>10}{i + 1:>5}{t['decisions']:>5}"
                    f"{t['decisions'] / t['seconds']:>8.2f}{t['prompts'] / d:>12.2f}"
                    f"{t['tokens'] / d:>8.0f}{(t['tokens'] - t['cached']) / d:>13.0f}"
                    f"{t['cached'] / max(t['tokens'], 1):>6.0%}"
                    f"{1 - t['backend_seconds'] / t['seconds']:>8.1%}"
                )
    head2 = (
        f"{'backend':<22}{'dec/s t1':>9}{'t2+':>7}{'t2+/t1':>8}{'one-q t1':>9}{'t2+':>7}"
        f"{'all/one t1':>11}{'t2+':>6}{'hit t1':>7}{'t2+':>6}{'comp t1/t2+':>12}"
        f"{'comp one/all t1':>16}{'t2+':>6}"
    )
    lines += ["", head2, "-" * len(head2)]
    for r in results:
        w, o = r.get("world"), r.get("world_one")
        if not w or not o:
            continue
        (a1, h1, c1), (a2, h2, c2) = rate(w[:1]), rate(w[1:])
        (o1, _, oc1), (o2, _, oc2) = rate(o[:1]), rate(o[1:])
        lines.append(
            f"{r['config']:<22}{a1:>9.2f}{a2:>7.2f}{a2 / a1:>8.2f}{o1:>9.2f}{o2:>7.2f}"
            f"{a1 / o1:>11.2f}{a2 / o2:>6.2f}{h1:>7.0%}{h2:>6.0%}{c1 / c2:>12.2f}"
            f"{oc1 / c1:>16.2f}{oc2 / c2:>6.2f}"
        )
    head3 = (
        f"{'backend':<22}{'questions':>10}{'asked':>12}{'calls':>6}{'requests':>9}"
        f"{'computed/req':>13}{'s/req':>7}{'ms/computed':>12}"
    )
    lines += ["", head3, "-" * len(head3)]
    for r in results:
        for kind, key in (("one", "calls_one"), ("all", "calls")):
            for question in ("choice", "stars", "stay/leave"):
                cs = [c for c in r.get(key) or [] if c["question"] == question]
                n = sum(c["requests"] for c in cs)
                if not n:
                    continue
                comp = sum(c["computed"] for c in cs)
                sec = sum(c["seconds"] for c in cs)
                lines.append(
                    f"{r['config']:<22}{kind:>10}{question:>12}{len(cs):>6}{n:>9}"
                    f"{comp / n:>13.1f}{sec / n:>7.3f}{1000 * sec / max(comp, 1):>12.2f}"
                )
    return "\n".join(lines)


LABEL = {
    "transformers": "transformers",
    "vllm": "vllm (prefix cache)",
    "vllm-nocache": "vllm (no prefix cache)",
}


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawTextHelpFormatter)
    ap.add_argument("--users", type=int, default=64)
    ap.add_argument("--ticks", type=int, default=4)
    ap.add_argument("--single", type=int, default=16, help="users timed one prompt at a time")
    ap.add_argument("--backends", default="auto", help="comma list or auto")
    ap.add_argument("--dtype", default="float32")
    ap.add_argument("--tf-batch-size", type=int, default=16)
    ap.add_argument("--block-size", type=int, default=0, help="vLLM KV block size (0: default)")
    ap.add_argument("--no-enforce-eager", dest="enforce_eager", action="store_false")
    ap.add_argument(
        "--world-ticks", type=int, default=4,
        help="ticks of a real filter_bubble_llm world per backend and question mode (0: skip)",
    )  # fmt: skip
    ap.add_argument("--world-steps", type=int, default=2, help="slates per session in the world")
    ap.add_argument(
        "--parts", default="synthetic,world",
        help="comma list: synthetic (the synthetic prompts), world (real world ticks)",
    )  # fmt: skip
    ap.add_argument("--json", type=Path, default=None)
    ap.add_argument("--_child", default=None, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")
    os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")

    if args._child:
        print("RESULT " + json.dumps(run_one(args._child, args)), flush=True)
        return

    if args.backends == "auto":
        names = ["transformers"]
        if importlib.util.find_spec("vllm") is not None:
            names += ["vllm", "vllm-nocache"]
    else:
        names = [n.strip() for n in args.backends.split(",") if n.strip()]
    passthrough = [a for a in (argv if argv is not None else sys.argv[1:]) if a != "--json"]
    if args.json:
        passthrough = [a for a in passthrough if a != str(args.json)]
    rows, raw = [], []
    for name in names:
        cmd = [sys.executable, __file__, *passthrough, "--_child", name]
        out = subprocess.run(cmd, capture_output=True, text=True)
        res = [ln for ln in out.stdout.splitlines() if ln.startswith("RESULT ")]
        if out.returncode != 0 or not res:
            print(f"{name}: failed (rc={out.returncode})\n{out.stderr[-3000:]}", file=sys.stderr)
            continue
        r = json.loads(res[-1][len("RESULT ") :])
        r["config"] = LABEL.get(name, name)
        raw.append(r)
        if "ticks" in r:
            rows.append(summarise(r, args.users))
        print(f"done {name}", file=sys.stderr, flush=True)
    if rows:
        print(
            f"synthetic prompts: {args.users} users x {args.ticks} ticks, labels 1-5, dtype "
            f"{args.dtype}; dec/s = decisions per second (t1 = first tick, cold; t2+ = later "
            f"ticks; 1-by-1 = one score call per prompt, {args.single} users); computed/dec = "
            "prompt tokens computed per decision (not served from the prefix cache); hit = "
            "prefix-cache hit rate"
        )
        print(table(rows))
    if any("world" in r for r in raw):
        print(
            f"\nworld ticks: filter_bubble_llm, {args.users} users (all active), "
            f"{args.world_steps} slates a session, mf, calibration none, seed 0; questions "
            "'all' = the LLM decider's choice, rating and stay/leave; 'one' = the choice "
            "question alone (rating and stay/leave from the utility model): the backend's rate "
            "for one question per decision on the same world; each run starts from a cold "
            "prefix cache; outside = share of tick time outside the backend"
        )
        print(world_table(raw))
    if args.json:
        args.json.write_text(json.dumps({"rows": rows, "raw": raw}, indent=1))


if __name__ == "__main__":
    main()
