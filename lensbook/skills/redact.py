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
    r"(pass(word|wd|phrase)?|secret|token|api[_-]?key|apikey|access[_-]?key|private[_-]?key|"
    r"credential|auth(orization)?|session[_-]?id|cookie|signature|salt)",
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
    # user:password@ in URLs (keep the user and host, drop the password)
    (
        re.compile(r"(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/]+(?=@)"),
        r"\g<pre>" + REDACTED,
    ),
    # Authorization headers
    (re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{12,}"), r"\1 " + REDACTED),
    # key=value / key: value assignments whose key names a secret
    (
        re.compile(
            r"(?i)(?P<key>[\w.-]*(pass(word|wd)?|secret|token|api[_-]?key|apikey|access[_-]?key|"
            r"credential|private[_-]?key)[\w.-]*)(?P<sep>\s*[:=]\s*[\"']?)(?P<val>[^\s\"',;&]{4,})"
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
