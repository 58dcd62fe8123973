"""Redaction: strings that look like credentials never reach a model.

Applied to every probe result and snapshot before it becomes tool output. It is a net, not a
guarantee: shapes known to carry secrets (provider API keys, tokens, JWTs, private keys, passwords
in URLs, ``password=...`` assignments) are replaced with ``[REDACTED]``, and any value stored
under a key whose name says it is secret is replaced whole.
"""

from __future__ import annotations

import re
from typing import Any

__all__ = ["REDACTED", "is_secret_key", "redact", "redact_text"]

REDACTED = "[REDACTED]"

_SECRET_KEY = re.compile(
    r"((?<![a-z])pass(word|wd|phrase)?(?![a-z])|secret|token(?!s)|api[_-]?key|apikey|access[_-]?key|"
    r"private[_-]?key|credential|auth(orization)?(?![a-z])|session[_-]?id|cookie|signature|"
    r"salt(?![a-z]))",
    re.IGNORECASE,
)

_PATTERNS: list[tuple[re.Pattern[str], str]] = [
    # PEM private keys (whole block, or a truncated start of one)
    (
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY-----.*?(-----END [A-Z0-9 ]*PRIVATE KEY-----|$)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # JSON Web Tokens
    (re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"), REDACTED),
    # Provider keys with well-known prefixes
    (re.compile(r"\bsk-(ant-|proj-|live-|test-)?[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\b(sk|rk|pk)_(live|test)_[A-Za-z0-9]{10,}"), REDACTED),
    (re.compile(r"\b(AKIA|ASIA)[0-9A-Z]{16}\b"), REDACTED),
    (re.compile(r"\b(ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bgithub_pat_[A-Za-z0-9_]{20,}"), REDACTED),
    (re.compile(r"\bglpat-[A-Za-z0-9_-]{16,}"), REDACTED),
    (re.compile(r"\bxox[abposr]-[A-Za-z0-9-]{10,}"), REDACTED),
    (re.compile(r"\bAIza[0-9A-Za-z_-]{30,}"), REDACTED),
    (re.compile(r"\bhf_[A-Za-z0-9]{20,}"), REDACTED),
    (re.compile(r"\bnpm_[A-Za-z0-9]{30,}"), REDACTED),
    # user:password@ in URLs (keep the user and host, drop the password). Like the next
    # pattern, it starts only where a token starts: from every position of a long run of word
    # characters the scan would be quadratic (0.5 s for 4,000 characters).
    (
        re.compile(
            r"(?<![a-zA-Z0-9+.-])(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)"
        ),
        r"\g<pre>" + REDACTED,
    ),
    # Authorization headers
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{12,}"), r"\1 " + REDACTED),
    # key=value / key: value assignments whose key names a secret; the key may be quoted, as
    # in a dict's repr ({'password': 'x'}) or JSON ("password": "x")
    (
        re.compile(
            r"(?i)(?<![\w.-])(?P<key>[\w.-]*((?<![a-z])pass(word|wd)?(?![a-z])|secret|token(?!s)|"
            r"api[_-]?key|apikey|access[_-]?key|credential|private[_-]?key)[\w.-]*)"
            r"(?P<sep>[\"']?\s*[:=]\s*[\"']?)(?P<val>(?!\d+\b)[^\s\"',;&]{4,})"
        ),
        r"\g<key>\g<sep>" + REDACTED,
    ),
    # AWS-style 40-char secrets following a hint
    (re.compile(r"(?i)(aws.{0,20}?)([A-Za-z0-9/+=]{40})\b"), r"\1" + REDACTED),
]


def is_secret_key(name: str) -> bool:
    """Whether a mapping key or variable name says its value is a secret."""
    return bool(_SECRET_KEY.search(name))


def redact_text(text: str) -> str:
    """Replace every credential-shaped substring of `text` with ``[REDACTED]``."""
    for pattern, replacement in _PATTERNS:
        text = pattern.sub(replacement, text)
    return text


def redact(value: Any) -> Any:
    """Redact a JSON-safe value recursively (strings, and values under secret-named keys)."""
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, dict):
        out: dict[Any, Any] = {}
        for key, item in value.items():
            skey = redact_text(key) if isinstance(key, str) else key
            if isinstance(key, str) and is_secret_key(key) and isinstance(item, (str, bytes)):
                out[skey] = REDACTED
            else:
                out[skey] = redact(item)
        return out
    if isinstance(value, (list, tuple)):
        return [redact(v) for v in value]
    return value
