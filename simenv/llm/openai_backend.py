"""Backend for any OpenAI-compatible server (``vllm serve``, llama.cpp server, Ollama, hosted
APIs) through the **completions** endpoint, with httpx's async client.

- One request per prompt, at most ``max_concurrency`` in flight (asyncio.Semaphore), spread
  round-robin over ``base_urls``; a retried request goes to the next endpoint.
- Time-outs, connection errors, HTTP 429 and 5xx are retried ``retries`` times with exponential
  backoff (``backoff * 2**attempt`` s); other 4xx fail at once. Failures raise `LLMError` naming
  the endpoint and the cause, and the retries this backend made (none are claimed when it made
  none: built by `simenv.studies.factory`, it has ``retries=0`` and `RetryingBackend` retries
  and says so).
- ``score``: ``max_tokens=1, temperature=0, logprobs=top_logprobs``. A returned token counts
  for a label when its stripped text equals the label, or is a non-empty prefix of exactly one
  label (so ``" 1"`` and ``"1"`` both count for ``"1"``; their probabilities add up). A label
  with no returned token gets the floor: the smallest probability among the returned top
  tokens (it ranked below all of them). Then the label probabilities are renormalised.
  ``stats.extra["labels_missing"]`` counts floored labels.
- ``generate``: ``temperature=0``; with ``json_schema`` the schema goes to the server as
  ``schema_param``: ``"structured_outputs"`` (vLLM >= 0.10: ``{"structured_outputs": {"json":
  schema}}``), ``"guided_json"`` (older vLLM), ``"response_format"`` (OpenAI style), or None;
  the answer must then parse as JSON with the required keys, else `LLMError`.
- The API key is read from the environment variable ``api_key_env`` at each request and is kept
  in no attribute: it is not in ``repr``, pickles or stats. Every error message goes through
  `simenv.llm.redact.redact` with the key's current value, so a server that echoes the
  Authorization header into its error body cannot put the key on the terminal. Without the
  variable no Authorization header is sent (local servers).
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import itertools
import math
import os
import time
from collections.abc import Awaitable, Sequence
from typing import Any, TypeVar

import numpy as np

from simenv.llm.base import BackendStats, LLMError, check_json, check_labels, retries_said
from simenv.llm.chat import apply_chat_template, chatml
from simenv.llm.redact import excerpt, redact

T = TypeVar("T")
_SCHEMA_PARAMS = ("structured_outputs", "guided_json", "response_format", None)


def _run_sync(coro: Awaitable[T]) -> T:
    """Run a coroutine from sync code, also when an event loop already runs (Jupyter)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    with concurrent.futures.ThreadPoolExecutor(1) as pool:
        return pool.submit(asyncio.run, coro).result()  # type: ignore[arg-type]


class _Retryable(Exception):
    pass


class OpenAIBackend:
    """`LLMBackend` over OpenAI-compatible HTTP servers (see the module docstring)."""

    name = "openai"

    def __init__(
        self,
        base_url: str | None = None,
        model: str = "",
        *,
        base_urls: Sequence[str] | None = None,
        api_key_env: str = "OPENAI_API_KEY",
        timeout: float = 30.0,
        max_concurrency: int = 8,
        retries: int = 3,
        backoff: float = 0.5,
        top_logprobs: int = 20,
        schema_param: str | None = "structured_outputs",
        tokenizer: str | None = None,
    ) -> None:
        urls = list(base_urls or []) + ([base_url] if base_url else [])
        if not urls:
            raise ValueError("OpenAIBackend needs base_url or base_urls")
        if not model:
            raise ValueError("OpenAIBackend needs the served model name (model=...)")
        if schema_param not in _SCHEMA_PARAMS:
            raise ValueError(f"schema_param must be one of {_SCHEMA_PARAMS}")
        if max_concurrency < 1:
            raise ValueError("max_concurrency must be >= 1")
        self.base_urls = [u.rstrip("/") for u in urls]
        self.model = model
        self.api_key_env = api_key_env
        self.timeout = timeout
        self.max_concurrency = max_concurrency
        self.retries = retries
        self.backoff = backoff
        self.top_logprobs = top_logprobs
        self.schema_param = schema_param
        self.tokenizer = tokenizer
        self._tok: Any = None
        self._rr = itertools.count()
        self.stats = BackendStats()
        self.stats.extra.update({"requests": 0, "labels_missing": 0})

    def __repr__(self) -> str:
        return f"OpenAIBackend(base_urls={self.base_urls!r}, model={self.model!r})"

    def __getstate__(self) -> dict[str, Any]:
        state = self.__dict__.copy()
        state["_rr"] = None
        state["_tok"] = None
        return state

    def __setstate__(self, state: dict[str, Any]) -> None:
        self.__dict__.update(state)
        self._rr = itertools.count()

    def chat_prompt(
        self, system: str | None, user: str, history: Sequence[tuple[str, str]] = ()
    ) -> str:
        """Chat prompt (earlier turns ``history``, then ``user``) ending with the assistant
        turn's opening: the chat template of ``tokenizer`` (a local HF folder) when given, else
        ChatML (SmolLM2, Qwen)."""
        if not self.tokenizer:
            return chatml(system, user, history)
        if self._tok is None:
            from transformers import AutoTokenizer

            self._tok = AutoTokenizer.from_pretrained(self.tokenizer)
        return apply_chat_template(self._tok, system, user, history)

    # ------------------------------------------------------------------ HTTP
    def _headers(self) -> dict[str, str]:
        key = os.environ.get(self.api_key_env, "")
        return {"Authorization": f"Bearer {key}"} if key else {}

    def _error(self, message: str) -> LLMError:
        """An `LLMError` whose message holds neither the API key nor anything like a token."""
        return LLMError(redact(message, [os.environ.get(self.api_key_env)]))

    def _excerpt(self, text: str) -> str:
        """What a message quotes of a server's answer: redacted, one line, 200 characters."""
        return excerpt(text, 200, [os.environ.get(self.api_key_env)])

    async def _post(self, client: Any, sem: asyncio.Semaphore, body: dict[str, Any]) -> Any:
        import httpx

        cause = "no attempt"
        url = self.base_urls[0]
        retried = 0
        for attempt in range(self.retries + 1):
            url = self.base_urls[next(self._rr) % len(self.base_urls)]
            try:
                async with sem:
                    self.stats.extra["requests"] += 1
                    r = await client.post(f"{url}/completions", json=body, headers=self._headers())
                if r.status_code == 429 or r.status_code >= 500:
                    raise _Retryable(f"HTTP {r.status_code}: {self._excerpt(r.text)}")
                if r.status_code >= 400:
                    raise self._error(f"{url}: HTTP {r.status_code}: {self._excerpt(r.text)}")
                return r.json()
            except httpx.TimeoutException:
                cause = f"time-out after {self.timeout} s"
            except httpx.TransportError as e:
                cause = f"{type(e).__name__}: {e}"
            except _Retryable as e:
                cause = str(e)
            except ValueError as e:  # invalid JSON body
                cause = f"invalid response: {e}"
            if attempt < self.retries:
                self.stats.retries += 1
                retried += 1
                await asyncio.sleep(self.backoff * 2**attempt)
        self.stats.failures += 1
        said = f" ({retries_said(retried)})" if retried else ""
        raise self._error(f"{url}: {cause}{said}")

    async def _post_all(self, bodies: list[dict[str, Any]]) -> list[Any]:
        import httpx

        sem = asyncio.Semaphore(self.max_concurrency)
        limits = httpx.Limits(max_connections=self.max_concurrency)
        async with httpx.AsyncClient(timeout=self.timeout, limits=limits) as client:
            tasks = [asyncio.ensure_future(self._post(client, sem, b)) for b in bodies]
            try:
                return list(await asyncio.gather(*tasks))
            except BaseException:
                for t in tasks:
                    t.cancel()
                await asyncio.gather(*tasks, return_exceptions=True)
                raise

    def _account(self, n: int, responses: list[Any], t0: float) -> None:
        usages = [r.get("usage") or {} for r in responses]
        details = [u.get("prompt_tokens_details") or {} for u in usages]
        self.stats.add_call(
            n,
            prompt_tokens=sum(int(u.get("prompt_tokens") or 0) for u in usages),
            completion_tokens=sum(int(u.get("completion_tokens") or 0) for u in usages),
            cached_prompt_tokens=sum(int(d.get("cached_tokens") or 0) for d in details),
            seconds=time.perf_counter() - t0,
        )

    # ------------------------------------------------------------------ protocol
    def score(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        for opts in options:
            check_labels(opts)
        if not prompts:
            return []
        t0 = time.perf_counter()
        bodies = [
            {
                "model": self.model,
                "prompt": p,
                "max_tokens": 1,
                "temperature": 0,
                "logprobs": self.top_logprobs,
            }
            for p in prompts
        ]
        responses = _run_sync(self._post_all(bodies))
        self._account(len(prompts), responses, t0)
        return [self._label_probs(r, opts) for r, opts in zip(responses, options, strict=True)]

    def _label_probs(self, response: Any, labels: Sequence[str]) -> np.ndarray:
        try:
            lp = response["choices"][0]["logprobs"]
            top = dict(lp.get("top_logprobs")[0] or {})
            if lp.get("tokens") and lp.get("token_logprobs"):
                top.setdefault(lp["tokens"][0], lp["token_logprobs"][0])
        except (KeyError, IndexError, TypeError, AttributeError):
            raise self._error(
                f"response has no top logprobs: {self._excerpt(str(response))}"
            ) from None
        probs = {t: math.exp(v) for t, v in top.items() if v is not None and math.isfinite(v)}
        if not probs:
            raise LLMError("response has no finite logprobs")
        mass = np.zeros(len(labels))
        hit = np.zeros(len(labels), dtype=bool)
        for tok, p in probs.items():
            s = tok.strip()
            if not s:
                continue
            exact = [j for j, lab in enumerate(labels) if lab == s]
            cands = exact or [j for j, lab in enumerate(labels) if lab.startswith(s)]
            if len(cands) == 1:
                mass[cands[0]] += p
                hit[cands[0]] = True
        floor = min(probs.values())
        self.stats.extra["labels_missing"] += int((~hit).sum())
        mass[~hit] = floor
        return mass / mass.sum()

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]:
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if not prompts:
            return []
        t0 = time.perf_counter()
        extra: dict[str, Any] = {}
        if json_schema is not None:
            if self.schema_param == "structured_outputs":
                extra["structured_outputs"] = {"json": json_schema}
            elif self.schema_param == "guided_json":
                extra["guided_json"] = json_schema
            elif self.schema_param == "response_format":
                extra["response_format"] = {
                    "type": "json_schema",
                    "json_schema": {"name": "answer", "schema": json_schema},
                }
        bodies = [
            {"model": self.model, "prompt": p, "max_tokens": max_tokens, "temperature": 0, **extra}
            for p in prompts
        ]
        responses = _run_sync(self._post_all(bodies))
        self._account(len(prompts), responses, t0)
        try:
            texts = [str(r["choices"][0]["text"]) for r in responses]
        except (KeyError, IndexError, TypeError):
            raise self._error(f"response has no text: {self._excerpt(str(responses[0]))}") from None
        if json_schema is not None:
            for t in texts:
                try:
                    check_json(t, json_schema)
                except LLMError as e:
                    raise self._error(str(e)) from None
        return texts
