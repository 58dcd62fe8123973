"""A corpus of made-up secrets in the shapes real ones have, each in the context it comes in.

Every secret is generated from its name (deterministic, distinctive), so a 12-character piece of
one cannot occur by chance in ordinary output: finding any piece means that secret leaked, even
half-cut. The shapes follow the families public secret scanners maintain (provider keys with
fixed prefixes, webhook URLs, connection strings, passwords by name and by position).
"""

from __future__ import annotations

import base64
import random
import string
from dataclasses import dataclass

__all__ = ["SHAPES", "Shape", "leaks", "pieces"]

_B64 = string.ascii_letters + string.digits + "+/"
_URLSAFE = string.ascii_letters + string.digits + "_-"
_ALNUM = string.ascii_letters + string.digits
_HEX = "0123456789abcdef"
_UPPER = string.ascii_uppercase + string.digits


def _rand(name: str, n: int, alphabet: str = _ALNUM) -> str:
    rng = random.Random(name)
    while True:
        text = "".join(rng.choice(alphabet) for _ in range(n))
        # keep mixed-case alphabets mixed (a digit, a capital, a small letter), as real keys are
        wanted = [set(string.digits), set(string.ascii_uppercase), set(string.ascii_lowercase)]
        if all(not (w & set(alphabet)) or (w & set(text)) for w in wanted):
            return text


@dataclass(frozen=True)
class Shape:
    """One secret and the line it usually comes in (``{s}`` marks the secret)."""

    name: str
    secret: str
    context: str

    def line(self) -> str:
        return self.context.replace("{s}", self.secret)


def _pem(name: str) -> str:
    body = "\n".join(_rand(f"{name}{i}", 64, _B64) for i in range(4))
    return f"-----BEGIN RSA PRIVATE KEY-----\n{body}\n-----END RSA PRIVATE KEY-----"


def _jwt(name: str) -> str:
    head = base64.urlsafe_b64encode(b'{"alg":"HS256","typ":"JWT"}').decode().rstrip("=")
    claims = f'{{"sub":"{_rand(name, 10)}","name":"Jane Doe"}}'.encode()
    payload = base64.urlsafe_b64encode(claims).decode().rstrip("=")
    return f"{head}.{payload}.{_rand(name + 's', 43, _URLSAFE)}"


def _shapes() -> list[Shape]:
    r = _rand
    rows: list[tuple[str, str, str]] = [
        ("anthropic", "sk-ant-api03-" + r("anthropic", 80, _URLSAFE), "ANTHROPIC_API_KEY={s}"),
        ("openai_project", "sk-proj-" + r("openai_project", 56, _URLSAFE), "client key {s}"),
        ("openai_legacy", "sk-" + r("openai_legacy", 48), "using legacy key {s} for the batch"),
        ("openai_service", "sk-svcacct-" + r("openai_service", 48, _URLSAFE), "svc {s}"),
        ("aws_key_id", "AKIA" + r("aws_key_id", 16, _UPPER), "aws_access_key_id={s}"),
        ("aws_session_id", "ASIA" + r("aws_session_id", 16, _UPPER), "temporary id {s} issued"),
        ("aws_secret_bare", r("aws_secret_bare", 40, _B64), "loaded {s} from the vault"),
        ("github_classic", "ghp_" + r("github_classic", 36), "cloning with {s}"),
        ("github_oauth", "gho_" + r("github_oauth", 36), "oauth {s}"),
        ("github_fine", "github_pat_" + r("github_fine", 82, _ALNUM + "_"), "token: {s}"),
        ("gitlab", "glpat-" + r("gitlab", 20, _URLSAFE), "CI_JOB uses {s}"),
        ("slack_bot", "xoxb-2048613795-4095182736458-" + r("slack_bot", 24), "slack bot {s}"),
        ("slack_user", "xoxp-1234567890-0987654321-" + r("slack_user", 32, _HEX), "user {s}"),
        (
            "slack_webhook",
            f"https://hooks.slack.com/services/T0{r('sw1', 9, _UPPER)}/B0{r('sw2', 9, _UPPER)}/"
            + r("slack_webhook", 24),
            "alerts go to {s}",
        ),
        (
            "discord_webhook",
            "https://discord.com/api/webhooks/112233445566778899/"
            + r("discord_webhook", 68, _URLSAFE),
            "hook={s}",
        ),
        ("stripe_secret", "sk_live_" + r("stripe_secret", 24), "stripe.api_key = {s}"),
        ("stripe_restricted", "rk_live_" + r("stripe_restricted", 24), "restricted {s}"),
        ("stripe_webhook", "whsec_" + r("stripe_webhook", 32), "signing with {s}"),
        ("google_api", "AIza" + r("google_api", 35, _URLSAFE), "maps?key={s}"),
        ("google_oauth_secret", "GOCSPX-" + r("google_oauth_secret", 28, _URLSAFE), "oauth {s}"),
        ("google_access", "ya29." + r("google_access", 60, _URLSAFE), "access {s}"),
        (
            "sendgrid",
            f"SG.{r('sendgrid1', 22, _URLSAFE)}.{r('sendgrid', 43, _URLSAFE)}",
            "mail via {s}",
        ),
        ("mailgun", "key-" + r("mailgun", 32, _HEX), "mailgun {s}"),
        ("twilio", "SK" + r("twilio", 32, _HEX), "twilio sid {s}"),
        ("npm", "npm_" + r("npm", 36), "//registry.npmjs.org/:_authToken={s}"),
        ("pypi", "pypi-AgEIcHlwaS5vcmc" + r("pypi", 64, _URLSAFE), "upload {s}"),
        ("huggingface", "hf_" + r("huggingface", 34), "hub {s}"),
        ("jwt", _jwt("jwt"), "session {s}"),
        ("pem", _pem("pem"), "{s}"),
        (
            "azure_account_key",
            r("azure_account_key", 86, _B64) + "==",
            "DefaultEndpointsProtocol=https;AccountName=shop;AccountKey={s};"
            "EndpointSuffix=core.windows.net",
        ),
        (
            "azure_sas",
            r("azure_sas", 43, _ALNUM) + "%3D",
            "https://shop.blob.core.windows.net/c?sv=2022-11-02&sp=r&sig={s}",
        ),
        ("azure_ad_secret", "aB3" + "8Q~" + r("azure_ad_secret", 34, _ALNUM + "_~."), "{s}"),
        ("postgres_url", r("postgres_url", 18), "postgres://app:{s}@db.internal:5432/orders"),
        ("mysql_url", r("mysql_url", 18), "mysql://root:{s}@10.0.0.5/shop"),
        ("redis_url", r("redis_url", 24), "redis://:{s}@cache:6379/0"),
        ("url_token", r("url_token", 32), "git clone https://{s}@github.com/acme/app.git"),
        (
            "sentry_dsn",
            r("sentry_dsn", 32, _HEX),
            "SENTRY_DSN=https://{s}@o12345.ingest.sentry.io/42",
        ),
        ("bearer", r("bearer", 32), "Authorization: Bearer {s}"),
        (
            "basic",
            base64.b64encode(f"bob:{r('basic', 14)}".encode()).decode(),
            "Authorization: Basic {s}",
        ),
        ("password_assign", r("password_assign", 16), "password={s}"),
        ("passwd_colon", r("passwd_colon", 16), "passwd: {s}"),
        ("db_password_json", r("db_password_json", 16), '{"dbPassword": "{s}", "user": "app"}'),
        ("admin_password_json", r("admin_password_json", 16), '{"adminPassword":"{s}"}'),
        ("pgpassword", r("pgpassword", 16), "PGPASSWORD={s} psql -h db orders"),
        ("mysql_pwd", r("mysql_pwd", 16), "MYSQL_PWD={s} mysqldump shop"),
        ("passphrase", r("passphrase", 16), "gpg passphrase={s}"),
        ("pwd", r("pwd", 16), "Server=db;Uid=app;Pwd={s};"),
        ("sessionid", r("sessionid", 32, _HEX), "Cookie: sessionid={s}; theme=dark"),
        ("flag_password", r("flag_password", 16), "app --user bob --password {s} --verbose"),
        ("flag_password_eq", r("flag_password_eq", 16), "app --password={s}"),
        ("mysql_p", r("mysql_p", 16), "mysql -u root -p{s} orders"),
        ("flag_api_key", r("flag_api_key", 24), "uploader --api-key {s} --dry-run"),
        ("flag_token", r("flag_token", 24), "deploy --token {s}"),
        ("client_secret", r("client_secret", 24), "client_secret: {s}"),
        ("python_api_key", r("python_api_key", 24), 'api_key = "{s}"'),
        ("django_secret", r("django_secret", 40, _ALNUM + "!@#%^*"), "SECRET_KEY = '{s}'"),
        ("auth_token", r("auth_token", 24), "auth_token={s}"),
        ("x_api_key", r("x_api_key", 24), "X-Api-Key: {s}"),
        ("gcp_private_key_id", r("gcp_private_key_id", 40, _HEX), '"private_key_id": "{s}"'),
        ("digitalocean", "dop_v1_" + r("digitalocean", 64, _HEX), "doctl {s}"),
        ("vault", "hvs." + r("vault", 90, _URLSAFE), "VAULT_TOKEN is {s}"),
        ("databricks", "dapi" + r("databricks", 32, _HEX), "databricks {s}"),
        ("shopify", "shpat_" + r("shopify", 32, _HEX), "shop {s}"),
        ("telegram", "5123456789:AA" + r("telegram", 33, _URLSAFE), "bot {s}"),
        ("doppler", "dp.pt." + r("doppler", 43), "doppler {s}"),
        ("linear", "lin_api_" + r("linear", 40), "linear {s}"),
        ("age", "AGE-SECRET-KEY-1" + r("age", 58, _UPPER), "{s}"),
        ("new_relic", "NRAK-" + r("new_relic", 27, _UPPER), "newrelic {s}"),
        ("grafana", "glsa_" + r("grafana", 32) + "_" + r("grafana2", 8, _HEX), "grafana {s}"),
        ("docker", "dckr_pat_" + r("docker", 27, _URLSAFE), "docker login -p {s}"),
        ("square", "sq0atp-" + r("square", 22, _URLSAFE), "square {s}"),
        ("postman", f"PMAK-{r('postman1', 24, _HEX)}-{r('postman', 34, _HEX)}", "postman {s}"),
        ("mapbox", f"sk.eyJ{r('mapbox1', 60, _URLSAFE)}.{r('mapbox', 22, _URLSAFE)}", "map {s}"),
        ("dropbox", "sl." + r("dropbox", 130, _URLSAFE), "dropbox {s}"),
        ("airtable", f"pat{r('airtable1', 14)}.{r('airtable', 64, _HEX)}", "airtable {s}"),
        ("contentful", "CFPAT-" + r("contentful", 43, _URLSAFE), "cms {s}"),
        ("netlify", "nfp_" + r("netlify", 36), "netlify {s}"),
        ("planetscale", "pscale_pw_" + r("planetscale", 43, _URLSAFE), "db {s}"),
        ("supabase", "sbp_" + r("supabase", 40, _HEX), "supabase {s}"),
        ("notion", "ntn_" + r("notion", 46), "notion {s}"),
        ("tailscale", "tskey-auth-" + r("tailscale", 30), "tailscale up --authkey={s}"),
        ("yaml_secret", r("yaml_secret", 20), "secret: {s}"),
        ("yaml_token", r("yaml_token", 20), "  token: {s}"),
    ]
    return [Shape(name, secret, context) for name, secret, context in rows]


SHAPES: list[Shape] = _shapes()


def pieces(secret: str) -> list[str]:
    """The secret and its 12-character pieces: a half-cut secret must not leak either."""
    core = secret
    for marker in ("-----BEGIN RSA PRIVATE KEY-----", "-----END RSA PRIVATE KEY-----"):
        core = core.replace(marker, "")
    core = core.replace("\n", "")
    step = 12
    return [secret, *(core[i : i + step] for i in range(0, max(len(core) - step, 1), step))]


def leaks(text: str, shapes: list[Shape] = SHAPES) -> list[str]:
    """Which secrets (or pieces of them) appear in `text`."""
    return [f"{s.name}: {piece!r}" for s in shapes for piece in pieces(s.secret) if piece in text]
