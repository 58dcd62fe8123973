"""No credential reaches a model: secrets placed where the kernel, logs and exceptions skills
look (user variables, the Out cache, log records, exception messages, the environment) never
appear in any probe's rendered output, while ordinary text does.

The secrets below are made up, in the shapes real ones have.
"""

from __future__ import annotations

import contextlib
import importlib
import io
import logging
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from lensbook.skills.base import Skill, render_output
from lensbook.skills.exceptions import ExceptionsSkill
from lensbook.skills.kernel import KernelSkill
from lensbook.skills.logs import LogsSkill
from lensbook.skills.redact import redact_text
from tests._ipython import ipython_shell

SECRETS: dict[str, str] = {
    "anthropic": "sk-ant-api03-Zq8VxW2mK9pL4nR7tY1uB6cD3eF5gH0jA_bC-dE9fG2hJ4kL6mN8pQ1rS3tU5vW7x"
    "Y9zA1bC3dE5fG7hJ9kLmNoPQ-AbCdEfAA",
    "openai": "sk-proj-Tb3kR9mW2xQ7vL5nZ8pY1cF4hJ6gD0sA-Ee2Rr4Tt6Yy8Uu0Ii2Oo4Pp6Aa8Ss0Dd2Ff4Gg"
    "6Hh8J",
    "openai_legacy": "sk-4fJ8kL2mN6pQ9rS3tU7vW1xY5zA0bC4dE8fG2hJ6kL9mN3pQ",
    "aws_access_key_id": "AKIAQ7XW3KD9PLM2RT5Z",
    "aws_secret": "Wq8vZ3kR9mT2xL5nB7pY1cF4hJ6gD0sAeE2rR4tT",
    "github": "ghp_R7tY2uI9oP4aS6dF8gH1jK3lZ5xC0vB2nM4qW",
    "github_pat": "github_pat_11ABCDEFG0aBcDeFgHiJkL_MnOpQrStUvWxYz0123456789AbCdEfGhIjKlMnOpQr",
    "slack_bot": "xoxb-2048613795-4095182736458-Qz7Xw9Kp2Lm4Nr6Ts8Vu0Yb1",
    "slack_user": "xoxp-1234567890-0987654321-1122334455-9f8e7d6c5b4a39281706f5e4d3c2b1a0",
    "google": "AIzaSyD4k9Lm2Np7Qr5St8Uv1Wx3Yz6Ab0Cd2Ef",
    "jwt": "eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9"
    ".eyJzdWIiOiIxMjM0NTY3ODkwIiwibmFtZSI6IkphbmUgRG9lIn0"
    ".Kx9vTq2mR7pW4nL8yZ3cB6fH1jD5gS0aE2rT4uI6oPq",
    "pem": "-----BEGIN RSA PRIVATE KEY-----\n"
    "MIIEowIBAAKCAQEAx7Q2vR9mT3kL8pW5nZ1yB4cF7hJ0gD6sA2eE9rR4tT6yU8iI\n"
    "0oO2pP4aA6sS8dD0fF2gG4hH6jJ8kK0lL2zZ4xX6cC8vV0bB2nN4mM6qQ8wW0eE2\n"
    "-----END RSA PRIVATE KEY-----",
    "url_password": "Tr0ub4dor-Horse-77",
    "assigned_password": "s3cr3t-Passw0rd-Z9",
    "bearer": "mF9xQ2vR7kT4pL8nW3zY6cB1hJ5gD0sA",
}
S = SECRETS

#: each secret in the context it usually comes in
IN_CONTEXT: list[str] = [
    f"client = Anthropic(api_key='{S['anthropic']}')",
    f"OPENAI_API_KEY={S['openai']}",
    f"using legacy key {S['openai_legacy']} for the batch",
    f"aws_access_key_id={S['aws_access_key_id']}",
    f"aws_secret_access_key={S['aws_secret']}",
    f"cloning with {S['github']}",
    f"token: {S['github_pat']}",
    f"slack bot {S['slack_bot']}",
    f"slack user {S['slack_user']}",
    f"https://maps.googleapis.com/maps/api/geocode/json?key={S['google']}",
    f"session {S['jwt']}",
    S["pem"],
    f"postgres://app:{S['url_password']}@db.internal:5432/orders",
    f"password={S['assigned_password']}",
    f"Authorization: Bearer {S['bearer']}",
]

ORDINARY = "processed 42 orders for customer alice in 3 batches"


def pieces(secret: str) -> list[str]:
    """The secret's distinctive middle pieces: a half-cut secret must not leak either."""
    core = secret.replace("-----BEGIN RSA PRIVATE KEY-----", "").replace(
        "-----END RSA PRIVATE KEY-----", ""
    )
    core = core.strip().replace("\n", "")
    step = 12
    return [core[i : i + step] for i in range(0, max(len(core) - step, 1), step)]


def leaks(text: str) -> list[str]:
    found = []
    for name, secret in SECRETS.items():
        for piece in [secret, *pieces(secret)]:
            if piece in text:
                found.append(f"{name}: {piece!r}")
    return found


def every_output(skill: Skill, extra: dict[str, list[dict[str, Any]]] | None = None) -> str:
    """Every probe of the skill (with default arguments, and any extra calls) and its snapshot,
    rendered as the model would see them."""
    outputs = [render_output(skill.snapshot())]
    for tool in skill.probes():
        calls = [{}, *(extra or {}).get(tool.name, [])]
        for arguments in calls:
            try:
                value = tool.fn(**arguments)
            except TypeError:
                continue  # a probe with a required argument, called through `extra`
            outputs.append(render_output(value, tool.max_chars))
    return "\n".join(outputs)


@pytest.fixture
def secret_env(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("ANTHROPIC_API_KEY_FOR_TEST", S["anthropic"])
    monkeypatch.setenv("AWS_SECRET_ACCESS_KEY", S["aws_secret"])
    monkeypatch.setenv("DATABASE_URL", f"postgres://app:{S['url_password']}@db/orders")
    monkeypatch.setenv("GITHUB_TOKEN", S["github"])


def test_the_corpus_is_redacted_in_context() -> None:
    for text in IN_CONTEXT:
        assert leaks(redact_text(text)) == [], text
    assert redact_text(ORDINARY) == ORDINARY


@pytest.fixture
def shell(tmp_path: Path) -> Iterator[Any]:
    with ipython_shell(tmp_path) as sh:
        yield sh


@pytest.mark.parametrize("share_values", [False, True])
def test_kernel_probes_leak_no_secret(shell: Any, secret_env: None, share_values: bool) -> None:
    ns = shell.user_ns
    ns["orders_summary"] = ORDINARY
    ns["api_key"] = S["anthropic"]
    ns["settings"] = {"password": S["assigned_password"], "aws_secret_access_key": S["aws_secret"]}
    ns["tokens"] = [S["github"], S["slack_bot"], S["jwt"]]
    ns["db_url"] = f"postgres://app:{S['url_password']}@db.internal:5432/orders"
    ns["private"] = S["pem"]
    ns["headers"] = {"Authorization": f"Bearer {S['bearer']}"}
    ns["lines"] = IN_CONTEXT
    with contextlib.redirect_stdout(io.StringIO()):
        shell.run_cell("api_key", store_history=True)  # a secret in the Out cache too
        shell.run_cell("settings", store_history=True)
        shell.run_cell(f"note = 'key={S['google']}'", store_history=True)
    sk = KernelSkill()
    sk.share_values = share_values
    try:
        outputs = every_output(
            sk,
            {"kernel_variable": [{"name": n} for n in ("api_key", "settings", "tokens", "Out[1]")]},
        )
    finally:
        sk.close()
    assert leaks(outputs) == []
    assert "orders_summary" in outputs  # names are shown
    if share_values:
        assert ORDINARY in outputs  # and values too, once the user opted in


def test_logs_probes_leak_no_secret(secret_env: None) -> None:
    sk = LogsSkill()
    try:
        sk.snapshot()
        log = logging.getLogger("secrets.demo")
        for text in IN_CONTEXT:
            log.warning("config line: %s", text)  # as an argument
            log.error(f"pre-formatted: {text}")  # formatted before logging (numbers masked)
            log.error(text)
        log.warning('{"password": "%s", "user": "bob"}', S["assigned_password"])
        log.warning(ORDINARY)
        outputs = every_output(
            sk,
            {
                "logs_search": [
                    {"pattern": "."},
                    {"pattern": "sk-|ghp_|xox|AKIA|eyJ|BEGIN|Bearer|postgres|password"},
                    {"pattern": "orders"},
                ],
                "logs_recent": [{"limit": 100, "min_level": "DEBUG"}],
                "logs_top_messages": [{"limit": 50, "min_level": "DEBUG"}],
            },
        )
    finally:
        sk.close()
    assert leaks(outputs) == []
    assert ORDINARY in outputs and "secrets.demo" in outputs


def test_exceptions_probes_leak_no_secret(shell: Any, secret_env: None) -> None:
    sk = ExceptionsSkill()
    original_hook = threading.excepthook
    threading.excepthook = lambda args: None  # keep the test output quiet
    try:
        sk.snapshot()
        log = logging.getLogger("secrets.exc")
        for text in IN_CONTEXT:
            try:
                raise ValueError(f"could not connect with {text}")
            except ValueError:
                log.exception("connect failed")

        def leak_in_thread() -> None:
            raise PermissionError(f"rejected key {S['openai']} for {ORDINARY}")

        worker = threading.Thread(target=leak_in_thread, name="uploader")
        worker.start()
        worker.join(5)
        with contextlib.redirect_stdout(io.StringIO()), contextlib.redirect_stderr(io.StringIO()):
            shell.run_cell(f"raise KeyError('{S['google']}')", store_history=True)
            shell.run_cell(f"token = '{S['github']}'; int(token)", store_history=True)
        outputs = every_output(
            sk,
            {
                "exceptions_recent": [{"limit": 50, "frames": 12}],
                "exceptions_top": [{"limit": 30, "frames": 12}],
            },
        )
    finally:
        sk.close()
        threading.excepthook = original_hook
    assert leaks(outputs) == []
    assert ORDINARY in outputs and "PermissionError" in outputs and "uploader" in outputs


def test_environment_values_never_shown(shell: Any, secret_env: None) -> None:
    # any built-in skill that can show the environment (kernel, process) shows names only
    outputs = []
    for module_name, cls_name in (
        ("lensbook.skills.kernel", "KernelSkill"),
        ("lensbook.skills.process", "ProcessSkill"),
    ):
        try:
            module = importlib.import_module(module_name)
        except ImportError:
            continue
        sk = getattr(module, cls_name)()
        try:
            outputs.append(every_output(sk))
        finally:
            close = getattr(sk, "close", None)
            if callable(close):
                close()
    assert outputs
    assert leaks("\n".join(outputs)) == []
