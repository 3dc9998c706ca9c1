"""Chat prompts and option-label tokens, written once for the backends that share them.

A chat prompt is one user turn after the system text, or a conversation: ``history`` holds the
earlier (user, assistant) turns, oldest first, and ``user`` is the last user turn. Built that
way, a follow-up question's prompt starts with the text of the prompt it follows (in ChatML,
and in any chat template that renders earlier turns unchanged), so a backend with a prefix
cache computes only the answer and the new turn.

- `chatml`: the ChatML format (SmolLM2, Qwen), for backends that hold no tokenizer (`FakeBackend`,
  `OpenAIBackend` without ``tokenizer``).
- `apply_chat_template`: a Hugging Face tokenizer's own chat template.
- `HFTokenizerPrompts`: the ``chat_prompt``, ``label_token(s)`` and prompt encoding of a backend
  that holds a Hugging Face tokenizer (`TransformersBackend`, `VLLMBackend`), so both see the
  same prompts, label tokens and token ids.

Label rule: a label is matched as the text the model would generate right after the prompt. If
the prompt is empty or ends with whitespace (a chat prompt ends with ``"assistant\\n"``) the label
is appended as is; otherwise with one leading space (``"Answer:"`` + ``" 1"``). The label's token
is the first token of that continuation when ``prompt + continuation`` is tokenised (computed on
the prompt's last characters, cached). The labels of one prompt must have distinct tokens
(`check_labels`); note that some tokenizers (SmolLM2's included) split ``" 1"`` into ``" "`` +
``"1"``, so digit labels need a prompt ending in a space or newline.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from functools import lru_cache
from typing import Any

from simenv.llm.base import BackendStats, check_labels

_TAIL_CHARS = 48  # prompt characters used to find a label's first token (BPE merges are local)


#: Earlier turns of a conversation: (user text, assistant answer) pairs, oldest first.
History = Sequence[tuple[str, str]]


def messages(system: str | None, user: str, history: History = ()) -> list[dict[str, str]]:
    """The chat messages of (system, earlier turns, user), in the OpenAI/HF format."""
    out = [{"role": "system", "content": system}] if system else []
    for asked, answered in history:
        out += [{"role": "user", "content": asked}, {"role": "assistant", "content": answered}]
    return [*out, {"role": "user", "content": user}]


def chatml(system: str | None, user: str, history: History = ()) -> str:
    """(system, earlier turns, user) in ChatML, ending with the assistant turn's opening."""
    sys_part = f"<|im_start|>system\n{system}<|im_end|>\n" if system else ""
    turns = "".join(
        f"<|im_start|>user\n{asked}<|im_end|>\n<|im_start|>assistant\n{answered}<|im_end|>\n"
        for asked, answered in history
    )
    return f"{sys_part}{turns}<|im_start|>user\n{user}<|im_end|>\n<|im_start|>assistant\n"


def apply_chat_template(
    tokenizer: Any, system: str | None, user: str, history: History = ()
) -> str:
    """``tokenizer``'s chat template applied to (system, earlier turns, user), ending with the
    assistant turn's opening (``add_generation_prompt=True``)."""
    text = tokenizer.apply_chat_template(
        messages(system, user, history), tokenize=False, add_generation_prompt=True
    )
    return str(text)


class HFTokenizerPrompts:
    """Prompts and labels on a Hugging Face tokenizer (see the module docstring).

    A backend inheriting this calls `_use_tokenizer` once in ``__init__`` and keeps its
    `BackendStats` in ``stats`` (`_encode` counts cut prompts in ``stats.extra["truncated"]``).
    """

    _tok: Any
    _first_token: Callable[[str, str], int]
    stats: BackendStats

    def _use_tokenizer(self, tokenizer: Any, cache_size: int = 65536) -> None:
        self._tok = tokenizer
        self._first_token = lru_cache(maxsize=cache_size)(self._first_token_uncached)

    def chat_prompt(self, system: str | None, user: str, history: History = ()) -> str:
        """The tokenizer's chat template applied to (system, earlier turns, user), ending with
        the assistant turn's opening. Put the stable text (persona) in ``system`` so prompts
        share a prefix."""
        return apply_chat_template(self._tok, system, user, history)

    def label_token(self, prompt: str, label: str) -> int:
        """Id of the first token the model would emit for ``label`` after ``prompt``."""
        tail = prompt[-_TAIL_CHARS:]
        sep = "" if not tail or tail[-1].isspace() else " "
        return int(self._first_token(tail, sep + label))

    def _first_token_uncached(self, tail: str, continuation: str) -> int:
        enc = self._tok.encode
        head = enc(tail, add_special_tokens=False) if tail else []
        full = enc(tail + continuation, add_special_tokens=False)
        if full[: len(head)] == head and len(full) > len(head):
            return int(full[len(head)])
        # the boundary merged across prompt and label: fall back to the label on its own
        return int(enc(continuation, add_special_tokens=False)[0])

    def label_tokens(self, prompt: str, labels: Sequence[str]) -> list[int]:
        """Validated first-token ids of ``labels`` after ``prompt`` (raises ValueError)."""
        check_labels(labels)
        ids = [self.label_token(prompt, lab) for lab in labels]
        check_labels(labels, [self._tok.decode([i]) for i in ids])
        return ids

    def _encode(self, prompts: Sequence[str], limit: int) -> list[list[int]]:
        """Token ids of ``prompts`` (special tokens added), each cut from the left to ``limit``
        tokens (the end holds the question); raises ValueError for an empty prompt."""
        out = []
        for p in prompts:
            ids = list(self._tok.encode(p, add_special_tokens=True))
            if len(ids) > limit:
                ids = ids[-limit:]
                self.stats.extra["truncated"] += 1
            if not ids:
                raise ValueError("empty prompt")
            out.append(ids)
        return out
