"""Redaction of secrets from what the LLM layer says: error messages, warnings, statistics.

A server may echo a request's headers into an error body, and an error body is quoted in the
`LLMError` the backend raises, so an API key could reach the terminal or a run folder. `redact`
is the one function every message of the LLM layer passes through at the boundary where it is
made (`simenv.llm.openai_backend`, `simenv.llm.wrappers.RetryingBackend`, the LLM decider's
messages and ``last_error``). It replaces

- every given secret verbatim (the value of the variable named by ``api_key_env``),
- ``Authorization`` and ``api-key``-style header or parameter values (``Authorization: Bearer
  x``, ``"authorization": "Basic x"``, ``api_key=x``, ``X-API-Key: x``),
- bearer tokens (``Bearer x``) and ``sk-``-like keys (``sk-…``, ``sk_live_…``),
- the user and password of a URL (``https://user:pass@host``)

with ``[REDACTED]``. `excerpt` is what a message quotes of a server's answer: redacted first,
then put on one line and cut (so a cut never leaves half a key that no longer matches).
"""

from __future__ import annotations

import re
from collections.abc import Iterable

REDACTED = "[REDACTED]"

_PATTERNS: tuple[tuple[re.Pattern[str], str], ...] = (
    # header or parameter values: Authorization: Bearer x / "authorization": "x" / api_key=x
    (
        re.compile(
            r"(?i)\b((?:proxy-)?authorization|(?:x-)?api[-_]?key|access[-_]?token)"
            r"([\"']?\s*[:=]\s*[\"']?)(?:(?:bearer|basic|token)\s+)?[^\s\"',;&}]+"
        ),
        rf"\1\2{REDACTED}",
    ),
    (re.compile(r"(?i)\bbearer\s+[A-Za-z0-9._~+/=-]+"), f"Bearer {REDACTED}"),
    (re.compile(r"\bsk[-_][A-Za-z0-9_-]{6,}"), REDACTED),
    (re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://)[^\s/@:]+:[^\s/@]+@"), rf"\1{REDACTED}@"),
)


def redact(text: str, secrets: Iterable[str | None] = ()) -> str:
    """``text`` with every secret of ``secrets`` and anything that looks like a credential
    replaced by ``[REDACTED]`` (see the module docstring)."""
    out = str(text)
    for secret in sorted({s for s in secrets if s}, key=len, reverse=True):
        out = out.replace(secret, REDACTED)
    for pattern, replacement in _PATTERNS:
        out = pattern.sub(replacement, out)
    return out


def excerpt(text: str, limit: int = 200, secrets: Iterable[str | None] = ()) -> str:
    """At most ``limit`` characters of ``text`` on one line, redacted before it is cut."""
    return " ".join(redact(text, secrets).split())[:limit]
