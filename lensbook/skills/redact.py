"""Redaction: strings that look like credentials never reach a model or a record.

Every text on its way out (probe results, snapshots, tool-call arguments, notifications, model
requests, recorded events) passes through `redact` before anything cuts it: a secret cut in half
is no longer recognisable, so cutting helpers (`clip`) redact first and only ever cut redacted
text. It is a net, not a guarantee. Three kinds of rules, each a single left-to-right scan so a
40,000-character text redacts in milliseconds (see ``benchmarks/bench_redaction.py``):

- **tokens with a known shape**: provider keys with fixed prefixes (the families public secret
  scanners such as gitleaks, trufflehog and detect-secrets maintain: cloud, VCS, chat,
  payment, mail, observability, package registries), JWTs, PEM private keys, Slack and Discord
  webhook URLs, Azure connection strings, and 40-character AWS-style secret keys wherever they
  appear (mixed case and a digit, so hex digests and paths are left alone);
- **secrets by position**: a password or token in a URL (``scheme://user:PASS@``,
  ``https://TOKEN@host``), ``Authorization: Bearer X``, command-line flags
  (``--password X``, ``--api-key=X``, mysql's ``-pX``);
- **secrets by name**: ``key=value`` / ``key: value`` / JSON ``"key": "value"`` whose key names a
  secret, in any case style (``password``, ``dbPassword``, ``DB_PASS``, ``PGPASSWORD``,
  ``MYSQL_PWD``, ``passphrase``, ``pwd``, ``sessionid``, ``AccountKey``...). Mapping keys use the
  same word list (`is_secret_key`): a value under a secret-named key is replaced whole.

Key names are matched on their words (``dbPassword`` -> db, password), not on substrings, so
ordinary keys such as ``passed``, ``author``, ``max_tokens`` or ``compass`` stay visible.

Why hand-written rules rather than ``detect-secrets`` (measured by the benchmark): on 40,000
characters of ordinary probe output it takes ~200 ms of CPU against ~7 ms here (it runs every
plugin on every line), and it flags ~430 false positives there (its entropy plugins take hex ids,
object addresses and words such as "dead" or "face" for secrets) against none here, where
redaction must leave the evidence readable; it also misses 2 of the corpus's 83 shapes (an Azure
SAS signature, a GCP key id). Its value is its rule families, whose shapes are carried over here
as facts.

The delimiters that mark process data (`lensbook.skills.untrusted`) never count as part of a
secret, so redacting a delimited text twice leaves its delimiters in place.
"""

from __future__ import annotations

import functools
import itertools
import re
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from lensbook.skills.untrusted import CLOSE, OPEN

__all__ = ["REDACTED", "clip", "is_secret_key", "redact", "redact_text"]

REDACTED = "[REDACTED]"

# -- secret names ----------------------------------------------------------------------------

#: words that name a secret wherever they appear in a key (``db_password``, ``dbPassword``)
_SECRET_WORDS = frozenset(
    {
        "password",
        "passwd",
        "passphrase",
        "pass",
        "pwd",
        "pgpassword",
        "secret",
        "secrets",
        "token",
        "apikey",
        "accesskey",
        "secretkey",
        "privatekey",
        "accountkey",
        "masterkey",
        "credential",
        "credentials",
        "sessionid",
        "sessid",
        "sas",
        "dsn",
    }
)
#: word pairs that name a secret together (``api_key``, ``AccountKey``, ``session-id``)
_SECRET_PAIRS = frozenset(
    {
        ("api", "key"),
        ("access", "key"),
        ("secret", "key"),
        ("private", "key"),
        ("account", "key"),
        ("master", "key"),
        ("signing", "key"),
        ("encryption", "key"),
        ("shared", "key"),
        ("session", "id"),
        ("client", "secret"),
        ("auth", "token"),
        ("connection", "string"),
    }
)
#: words that make a mapping key secret (its value is replaced whole) but are too common in
#: free text (``auth: ok``, ``cookie jar``) to redact what follows them there
_MAPPING_WORDS = frozenset({"auth", "authorization", "cookie", "cookies", "signature", "salt"})

_WORD = re.compile(r"[A-Z]+(?![a-z])|[A-Z]?[a-z]+|[0-9]+")


def _words(name: str) -> list[str]:
    """The words of an identifier: ``dbPassword`` -> db, password; ``API_KEY`` -> api, key."""
    return [w.lower() for w in _WORD.findall(name)]


@functools.lru_cache(maxsize=4096)
def _names_secret(name: str, extra: frozenset[str] = frozenset()) -> bool:
    words = _words(name)
    if any(w in _SECRET_WORDS or w in extra for w in words):
        return True
    return any(pair in _SECRET_PAIRS for pair in itertools.pairwise(words))


def is_secret_key(name: str) -> bool:
    """Whether a mapping key or variable name says its value is a secret."""
    return _names_secret(name, _MAPPING_WORDS)


#: a rule that finds secrets by their name runs only on text holding one of these (lowercased)
_NAME_HINTS = ("pass", "pwd", "secret", "token", "key", "cred", "sess", "sas", "dsn")

# -- patterns --------------------------------------------------------------------------------

#: characters that end a secret value: whitespace, quotes, separators and the data delimiters
_END = r"\s\"'`,;&" + OPEN + CLOSE
#: one character of a bare value
_V = f"[^{_END}]"


def _keep_group(name: str) -> Callable[[re.Match[str]], str]:
    def sub(match: re.Match[str]) -> str:
        return (match.group(name) or "") + REDACTED

    return sub


#: bare values that are no secret whatever their key says (``pass_rate=0.95``, ``token: true``)
_PLAIN_VALUE = re.compile(r"[-+]?\d+(?:\.\d+)?%?|(?i:true|false|none|null|yes|no|on|off)")


def _redact_assignments(text: str) -> str:
    """``key=value``: redact each value whose key names a secret (and is not a bare number).

    The pattern matches the key and separator only, the value is read ahead without being
    consumed, so a key that names no secret (``retried: password: X``) does not swallow the
    assignment that follows it. One left-to-right scan.
    """
    out: list[str] = []
    pos = 0
    for match in _ASSIGNMENT.finditer(text):
        if match.start() < pos:
            continue  # inside a value already redacted
        group = next(g for g in ("qv", "qv2", "bare") if match.group(g) is not None)
        value = match.group(group)
        if not _names_secret(match.group("key")) or value.startswith(REDACTED):
            continue
        if group == "bare" and (len(value) < 3 or _PLAIN_VALUE.fullmatch(value)):
            continue
        out += [text[pos : match.start(group)], REDACTED]
        pos = match.end(group)
    out.append(text[pos:])
    return "".join(out)


def _flag(match: re.Match[str]) -> str:
    """``--password X``: redact the argument of a flag that names a secret."""
    if not _names_secret(match.group("flag")) or match.group("val").isdigit():
        return match.group(0)
    return match.group("pre") + REDACTED


def _aws_like(match: re.Match[str]) -> str:
    """A 40-character base64 run: an AWS secret key if it mixes cases and digits, not a path."""
    token = match.group(0)
    if (
        token.count("/") > 2
        or token.startswith("/")
        or not any(c.isdigit() for c in token)
        or not any(c.isupper() for c in token)
        or not any(c.islower() for c in token)
    ):
        return token
    return REDACTED


def _userinfo(match: re.Match[str]) -> str:
    """``https://TOKEN@host``: a user part that looks like a token, not a login name: 12+
    characters mixing letters and digits, 16+ with a digit (a numeric key), or 24+ of any
    kind (no one's login is that long)."""
    user = match.group("user")
    digit = any(c.isdigit() for c in user)
    mixed = digit and any(c.isalpha() for c in user)
    if (len(user) >= 12 and mixed) or (len(user) >= 16 and digit) or len(user) >= 24:
        return match.group("pre") + REDACTED + "@"
    return match.group(0)


#: key=value / key: value / "key": "value"; the key may be quoted, as in a dict's repr
#: ({'password': 'x'}) or JSON, escaped JSON included; `_assignment` decides on the key's words
_ASSIGNMENT = re.compile(
    r"(?<![\w.-])(?P<key>[A-Za-z_][\w.-]{0,60})"
    r"\\?[\"']?\s*[:=]\s*"
    r"(?=\\?\"(?P<qv>[^\"\\\n" + OPEN + CLOSE + r"]{1,400})"
    r"|\\?'(?P<qv2>[^'\\\n" + OPEN + CLOSE + r"]{1,400})"
    r"|(?P<bare>" + _V + "+))"
)


@dataclass(frozen=True)
class _Rule:
    """A pattern and its replacement, tried only when the text holds one of `needles`."""

    needles: tuple[str, ...]
    pattern: re.Pattern[str]
    replacement: Any
    #: a scan of the whole text instead of `pattern.sub(replacement)`
    whole: Callable[[str], str] | None = None

    def apply(self, text: str) -> str:
        if self.whole is not None:
            return self.whole(text)
        return self.pattern.sub(self.replacement, text)


_RULES: list[_Rule] = [
    # PEM private keys (whole block, or a truncated start of one)
    _Rule(
        ("private key",),
        re.compile(
            r"-----BEGIN [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----.*?"
            r"(-----END [A-Z0-9 ]*PRIVATE KEY( BLOCK)?-----|$)",
            re.DOTALL,
        ),
        REDACTED,
    ),
    # JSON Web Tokens
    _Rule(
        ("eyj",),
        re.compile(r"\beyJ[A-Za-z0-9_-]{5,}\.eyJ[A-Za-z0-9_-]{5,}\.[A-Za-z0-9_-]*"),
        REDACTED,
    ),
    # Tokens with well-known prefixes. One alternation, one scan for every family (gitleaks /
    # trufflehog / detect-secrets shapes), anchored where no letter or digit comes before: a
    # word boundary would miss a token after "_" (GITHUB_TOKEN_ghp_...) or after an escape
    # in a repr ('...\\nsk-ant-...', '\\x00ghp_...', a BOM's '\\ufeffghp_...'), whose last
    # character is a letter or digit
    _Rule(
        (),
        re.compile(
            r"(?:(?<![A-Za-z0-9])|(?<=\\[ntr0])|(?<=\\x[0-9a-fA-F]{2})"
            r"|(?<=\\u[0-9a-fA-F]{4})|(?<=\\U[0-9a-fA-F]{8}))(?:"
            # AI providers: Anthropic, OpenAI, Hugging Face, Replicate, Groq, Perplexity
            r"sk-(?:ant-|proj-|svcacct-|admin-|live-|test-)?[A-Za-z0-9_-]{16,}"
            r"|hf_[A-Za-z0-9]{20,}|r8_[A-Za-z0-9]{30,}|gsk_[A-Za-z0-9]{40,}|pplx-[A-Za-z0-9]{40,}"
            # Stripe keys and webhook secrets
            r"|(?:sk|rk|pk)_(?:live|test)_[A-Za-z0-9]{10,}|whsec_[A-Za-z0-9+/=]{16,}"
            # AWS access key ids
            r"|(?:AKIA|ASIA|ABIA|ACCA|A3T[A-Z0-9])[0-9A-Z]{16}\b"
            # GitHub, GitLab, Bitbucket
            r"|(?:ghp|gho|ghu|ghs|ghr)_[A-Za-z0-9]{20,}|github_pat_[A-Za-z0-9_]{20,}"
            r"|gl(?:pat|dt|ptt|rt|cbt|imt|ft|soat)-[A-Za-z0-9_-]{16,}|GR1348941[A-Za-z0-9_-]{16,}"
            r"|ATBB[A-Za-z0-9_=.-]{24,}|ATATT3[A-Za-z0-9_=-]{24,}"
            # Slack tokens, Discord and Telegram bot tokens
            r"|xox[abposre]-[A-Za-z0-9-]{10,}|xapp-\d-[A-Za-z0-9-]{20,}"
            r"|[MN][A-Za-z0-9]{23,25}\.[A-Za-z0-9_-]{6}\.[A-Za-z0-9_-]{27,}"
            r"|\d{8,10}:AA[A-Za-z0-9_-]{33}"
            # Google API keys, OAuth client secrets and tokens
            r"|AIza[0-9A-Za-z_-]{30,}|GOCSPX-[A-Za-z0-9_-]{20,}|ya29\.[A-Za-z0-9_-]{20,}"
            r"|1//0[A-Za-z0-9_-]{30,}"
            # SendGrid, Mailgun, Mailchimp, Twilio, Postmark-like
            r"|SG\.[A-Za-z0-9_-]{16,}\.[A-Za-z0-9_-]{16,}|key-[0-9a-z]{32}"
            r"|[0-9a-f]{32}-us\d{1,2}\b|SK[0-9a-fA-F]{32}\b"
            # package registries: npm, PyPI, RubyGems, NuGet, Docker Hub
            r"|npm_[A-Za-z0-9]{30,}|pypi-AgE[A-Za-z0-9_-]{50,}|rubygems_[a-f0-9]{48}"
            r"|oy2[a-z0-9]{43}|dckr_pat_[A-Za-z0-9_-]{20,}"
            # cloud and platforms: DigitalOcean, Heroku, Databricks, Vault, Doppler, Pulumi,
            # Terraform, Shopify, Square, Linear, Postman, New Relic, Grafana, Sentry, age
            r"|do[opr]_v1_[a-f0-9]{64}|HRKU-[A-Za-z0-9_-]{20,}|dapi[a-f0-9]{32}"
            r"|hv[sbr]\.[A-Za-z0-9_-]{24,}|dp\.(?:pt|st|ct|sa|scrt)\.[A-Za-z0-9]{40,}"
            r"|pul-[a-f0-9]{40}|[A-Za-z0-9]{14}\.atlasv1\.[A-Za-z0-9_=-]{60,}"
            r"|shp(?:at|ca|pa|ss)_[a-fA-F0-9]{32}|sq0(?:atp|csp)-[A-Za-z0-9_-]{22,}"
            r"|EAAA[A-Za-z0-9_-]{60}|lin_api_[A-Za-z0-9]{40}|PMAK-[a-f0-9]{24}-[a-f0-9]{34}"
            r"|NRAK-[A-Z0-9]{27}|glc_[A-Za-z0-9+/]{32,}={0,2}|glsa_[A-Za-z0-9]{32}_[A-Fa-f0-9]{8}"
            r"|sntry[su]_[A-Za-z0-9+/=_]{40,}|AGE-SECRET-KEY-1[0-9A-Z]{58}"
            # SaaS tokens: Mapbox secret, Dropbox, Airtable, Contentful, Netlify, PlanetScale,
            # Prefect, Supabase, Notion, Fly.io, 1Password service accounts, Typeform, Tailscale
            r"|sk\.eyJ[A-Za-z0-9_-]{40,}\.[A-Za-z0-9_-]{20,}|sl\.[A-Za-z0-9_-]{120,}"
            r"|pat[A-Za-z0-9]{14}\.[a-f0-9]{64}|CFPAT-[A-Za-z0-9_-]{43}|nfp_[A-Za-z0-9]{36}"
            r"|pscale_(?:tkn|pw|oauth)_[A-Za-z0-9_.-]{32,}|pnu_[A-Za-z0-9]{36}|sbp_[a-f0-9]{40}"
            r"|(?:secret|ntn)_[A-Za-z0-9]{43,}|fo1_[A-Za-z0-9_-]{43}|ops_eyJ[A-Za-z0-9+/=_-]{100,}"
            r"|tfp_[A-Za-z0-9_.=-]{40,}|tskey-(?:auth|api|client)-[A-Za-z0-9-]{20,}"
            # Azure AD client secrets
            r"|[A-Za-z0-9_~.]{3}\dQ~[A-Za-z0-9_~.-]{31,34}"
            r")"
        ),
        REDACTED,
    ),
    # Slack and Discord webhook URLs (the URL is the credential)
    _Rule(
        ("hooks.slack.com", "/api/webhooks/"),
        re.compile(
            r"https://(?:hooks\.slack\.com/(?:services|workflows|triggers)"
            r"|(?:[a-z]+\.)?discord(?:app)?\.com/api/webhooks)/" + _V + "+"
        ),
        REDACTED,
    ),
    # Azure connection strings and SAS tokens: AccountKey=..., SharedAccessKey=..., sig=...
    _Rule(
        ("key=", "secretvalue=", "sig="),
        re.compile(
            r"(?i)(?P<pre>(?<![A-Za-z])(?:AccountKey|SharedAccessKey|SharedSecretValue|sig)=)"
            r"[A-Za-z0-9+/%=_-]{16,}"
        ),
        _keep_group("pre"),
    ),
    # user:password@ in URLs (keep the user and host, drop the password). Like the next
    # rules, it starts only where a token starts: from every position of a long run of word
    # characters the scan would be quadratic (0.5 s for 4,000 characters).
    _Rule(
        ("://",),
        re.compile(
            r"(?<![a-zA-Z0-9+.-])(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://[^\s:/@]*:)[^\s@/"
            + OPEN
            + CLOSE
            + r"]+(?=@)"
        ),
        _keep_group("pre"),
    ),
    # https://TOKEN@host: a token as the whole user part
    _Rule(
        ("://",),
        re.compile(r"(?<![a-zA-Z0-9+.-])(?P<pre>[a-zA-Z][a-zA-Z0-9+.-]*://)(?P<user>[^\s:/@]+)@"),
        _userinfo,
    ),
    # Authorization headers
    _Rule(
        ("bearer", "basic", "token"),
        re.compile(r"(?i)\b(bearer|basic|token)\s+[A-Za-z0-9._~+/=-]{12,}"),
        r"\1 " + REDACTED,
    ),
    # command-line flags naming a secret: --password X, --api-key=X, -p X is too common to judge
    _Rule(
        _NAME_HINTS,
        re.compile(
            r"(?<![\w-])(?P<pre>--?(?P<flag>[a-z][a-z0-9]*(?:[-_][a-z0-9]+){0,5})(?:=|\s+)[\"']?)"
            r"(?P<val>(?!-)" + _V + "+)"
        ),
        _flag,
    ),
    # mysql's -pPASSWORD (a value glued to -p with a digit, capital or symbol: not -pthread)
    _Rule(
        ("-p",),
        re.compile(
            r"(?<![\w-])(?P<pre>-p)(?!rint0\b)(?=" + _V + r"*[^a-z" + _END + "])" + _V + "{3,}"
        ),
        _keep_group("pre"),
    ),
    # key=value / key: value / "key": "value" whose key names a secret
    _Rule(_NAME_HINTS, _ASSIGNMENT, None, whole=_redact_assignments),
    # AWS-style 40-character secret keys, anywhere
    _Rule(
        (), re.compile(r"(?<![A-Za-z0-9/+=._-])[A-Za-z0-9/+]{40}(?![A-Za-z0-9/+=._-])"), _aws_like
    ),
]


def redact_text(text: str) -> str:
    """Replace every credential-shaped substring of `text` with ``[REDACTED]`` (a plain str)."""
    if type(text) is not str:
        text = str(text)  # a marked string (`ProcessText`) is redacted, not marked, here
    if len(text) < _SHORTEST:
        return text
    if len(text) <= _CACHED_UP_TO:
        # the same short strings (names, ids, kinds) come back in every event of a run
        return _redact_cached(text)
    return _redact(text)


#: no rule can find a secret in fewer characters (``pwd=abc`` is 7)
_SHORTEST = 6
_CACHED_UP_TO = 512


@functools.lru_cache(maxsize=4096)
def _redact_cached(text: str) -> str:
    return _redact(text)


def _redact(text: str) -> str:
    lowered = text.lower()
    for rule in _RULES:
        # `in` is a fast substring scan: most rules never run on ordinary text
        if rule.needles:
            for needle in rule.needles:
                if needle in lowered:
                    break
            else:
                continue
        text = rule.apply(text)
    return text


#: what `clip` redacts beyond its limit, so a secret that starts before the cut is seen whole
_CLIP_MARGIN = 4096


def clip(text: str, limit: int, marker: str = "...") -> str:
    """`text` redacted, then cut to at most `limit` characters (`marker` shows the cut).

    The one way to shorten text on its way to a model or a record: redaction comes first, so
    no credential is ever left half-cut and unrecognisable. Only the first `limit` characters
    plus a margin longer than any token rule's secret are redacted (a log message of megabytes
    costs no more than its shown part); a private key cut by that margin is still redacted
    from its BEGIN line to the end.
    """
    window = text[: limit + _CLIP_MARGIN]
    shown = redact_text(window)
    if len(shown) <= limit and len(window) == len(text):
        return shown
    return shown[: max(0, limit - len(marker))] + marker


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
