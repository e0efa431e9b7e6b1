"""Pipeline settings: pipeline.env < pipeline.local.env < environment < command-line flags.

Every value is parsed and checked when loaded; an error names the key and the file (or
"environment", or "--flag") it came from. Secrets are masked whenever a setting is shown.
"""

from __future__ import annotations

import os
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Mapping
from urllib.parse import urlsplit, urlunsplit

from etl.errors import ConfigError
from etl.paths import paths

SOURCES = ("s3", "direct", "file", "local")


def _parse_bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in ("1", "true", "yes", "on"):
        return True
    if low in ("0", "false", "no", "off"):
        return False
    raise ValueError(f"expected true or false, got {raw!r}")


def _parse_int(minimum: int) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(f"expected a whole number, got {raw!r}") from None
        if value < minimum:
            raise ValueError(f"must be at least {minimum}, got {value}")
        return value

    return parse


def _parse_choice(*choices: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        value = raw.strip().lower()
        if value not in choices:
            raise ValueError(f"expected one of {', '.join(choices)}, got {raw!r}")
        return value

    return parse


def _parse_list(raw: str) -> list[str]:
    return [item.strip() for item in raw.split(",") if item.strip()]


def _parse_str(raw: str) -> str:
    return raw.strip()


def _parse_mongo_uri(raw: str) -> str:
    value = raw.strip()
    if not value:
        raise ValueError("must not be empty")
    if not value.startswith(("mongodb://", "mongodb+srv://")):
        raise ValueError("expected mongodb://host:port/ or mongodb+srv://host/")
    try:
        parts = urlsplit(value)
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ValueError(f"bad host or port in {mask_uri(value)!r}") from None
    if not parts.hostname:
        raise ValueError("a mongodb:// URI needs a host")
    return value


def _parse_http_url(raw: str) -> str:
    value = raw.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError(f"expected http(s)://host:port, got {mask_uri(value)!r}")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ValueError(f"bad port in {mask_uri(value)!r}") from None
    return value


def _parse_pg_dsn(raw: str) -> str:
    value = raw.strip()
    if value and not (value.startswith(("postgresql://", "postgres://")) or "=" in value):
        raise ValueError("expected postgresql://user@host:port/db or key=value pairs")
    return value


def _parse_s3_prefix(raw: str) -> str:
    value = raw.strip().lstrip("/")
    if value and not value.endswith("/"):
        value += "/"
    return value


def _parse_bucket(raw: str) -> str:
    value = raw.strip()
    if not re.fullmatch(r"[a-z0-9][a-z0-9.\-]{1,61}[a-z0-9]", value):
        raise ValueError(f"not a valid S3 bucket name: {value!r}")
    return value


def _parse_db_name(raw: str) -> str:
    from etl.mongo import check_db_name

    return check_db_name(raw.strip())


def _parse_db_list(raw: str) -> list[str]:
    from etl.mongo import check_db_name

    return [check_db_name(name) for name in _parse_list(raw)]


def _parse_percent(raw: str) -> float:
    """`50%` or `50` (a percentage, 0 to 100) as a fraction, 0.5."""
    text = raw.strip().removesuffix("%").strip()
    try:
        value = float(text)
    except ValueError:
        raise ValueError(f"expected a percentage such as 50%, got {raw!r}") from None
    if not 0 <= value <= 100:
        raise ValueError(f"a percentage must be between 0% and 100%, got {raw!r}")
    return value / 100


def _parse_percent_map(raw: str) -> dict[str, float]:
    """`daily_metrics=90%,audiences=100%`: a percentage per collection."""
    out: dict[str, float] = {}
    for item in _parse_list(raw):
        name, sep, value = item.partition("=")
        if not sep or not name.strip():
            raise ValueError(f"expected collection=percent, got {item!r}")
        out[name.strip()] = _parse_percent(value)
    return out


ALERT_EVENTS = ("failure", "pending", "guard", "success")


def _parse_alert_on(raw: str) -> list[str]:
    events = [e.lower() for e in _parse_list(raw)]
    unknown = [e for e in events if e not in ALERT_EVENTS]
    if unknown:
        raise ValueError(f"unknown event {unknown[0]!r}; events are {', '.join(ALERT_EVENTS)}")
    return events


def _parse_addresses(raw: str) -> list[str]:
    found = _parse_list(raw)
    for address in found:
        if not re.fullmatch(r"[^@\s,]+@[^@\s,]+", address):
            raise ValueError(f"not an e-mail address: {address!r}")
    return found


def _parse_seconds(raw: str) -> float:
    try:
        value = float(raw.strip())
    except ValueError:
        raise ValueError(f"expected a number of seconds, got {raw!r}") from None
    if not 0 < value <= 300:
        raise ValueError(f"must be more than 0 and at most 300 seconds, got {raw!r}")
    return value


def _parse_webhook_url(raw: str) -> str:
    # The messages never repeat the value: a webhook URL usually carries its token.
    value = raw.strip()
    if not value:
        return ""
    parts = urlsplit(value)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValueError("expected an http:// or https:// URL (not shown: it may hold a token)")
    try:
        parts.port  # noqa: B018 - raises on a non-numeric port
    except ValueError:
        raise ValueError("the URL has a bad port (not shown: it may hold a token)") from None
    return value


def mask_webhook(value: str) -> str:
    """A webhook URL with its path and query (where services put the token) masked. Text that
    is not a URL (a parse error's message) is returned as it is."""
    if not re.match(r"[A-Za-z][A-Za-z0-9+.-]*://", value):
        return value
    parts = urlsplit(value)
    if not parts.hostname:
        return "***"
    host = parts.hostname + (f":{parts.port}" if parts.port else "")
    hidden = parts.path not in ("", "/") or parts.query or parts.password
    return f"{parts.scheme}://{host}/***" if hidden else f"{parts.scheme}://{host}/"


def _webhook_secrets(value: str) -> list[str]:
    parts = urlsplit(value)
    found = [value]
    if parts.path not in ("", "/"):
        found.append(parts.path.lstrip("/"))
    if parts.query:
        found.append(parts.query)
    if parts.password:
        found.append(parts.password)
    return found


@dataclass(frozen=True)
class Setting:
    key: str
    parse: Callable[[str], Any]
    default: str
    help: str
    secret: bool = False


SETTINGS: tuple[Setting, ...] = (
    Setting("MONGO_DB_NAME", _parse_db_name, "bravo-1", "target MongoDB database"),
    Setting("MONGO_BACKUP_BEFORE_LOAD", _parse_bool, "true", "back up collections before a load"),
    Setting("MONGO_PARALLEL_DBS", _parse_db_list, "", "known parallel databases"),
    Setting("MONGO_URI", _parse_mongo_uri, "mongodb://127.0.0.1:27018/", "MongoDB URI", secret=True),
    Setting("MONGO_MANAGED", _parse_bool, "true", "run the managed MongoDB server on MONGO_URI's port"),
    Setting("MONGO_BACKUP_RETENTION", _parse_int(1), "10", "backup versions kept per database"),
    Setting("LOCAL_PG_DB", _parse_str, "media_tool", "local PostgreSQL database to restore into"),
    Setting("LOCAL_PG_HOST", _parse_str, "localhost", "local PostgreSQL host"),
    Setting("LOCAL_PG_PORT", _parse_int(1), "5432", "local PostgreSQL port"),
    Setting("LOCAL_PG_USER", _parse_str, "postgres", "local PostgreSQL user"),
    Setting("LOCAL_PG_PASSWORD", _parse_str, "", "local PostgreSQL password", secret=True),
    Setting("LOCAL_PG_MANAGED", _parse_bool, "true", "run a private cluster in .run/pg"),
    Setting("S3_BUCKET", _parse_bucket, "brkthru-media-tool-exports", "S3 bucket of dumps/exports"),
    Setting("S3_PREFIX", _parse_s3_prefix, "postgres-exports/", "S3 prefix of dumps/exports"),
    Setting("S3_ENDPOINT_URL", _parse_http_url, "", "S3 endpoint (empty: AWS)"),
    Setting("AWS_PROFILE", _parse_str, "", "AWS profile (SSO)"),
    Setting("AWS_REGION", _parse_str, "us-east-1", "AWS region"),
    Setting("ETL_SOURCE", _parse_choice(*SOURCES), "s3", "where the dump comes from"),
    Setting("PROD_PG_DSN", _parse_pg_dsn, "", "production DSN for --source direct", secret=True),
    Setting("ETL_BATCH_SIZE", _parse_int(1), "10000", "documents per insert batch"),
    Setting("ETL_VALIDATE_AFTER_LOAD", _parse_bool, "true", "validate after every load"),
    Setting("ETL_SCHEMA_STRICT_MODE", _parse_bool, "false", "every schema change needs review"),
    Setting("ETL_LOAD_VIEWS", _parse_list, "", "views loaded like tables (schema.name, comma-separated)"),
    Setting("ETL_DUMP_FILE", _parse_str, "", "dump path for --source file"),
    Setting("ETL_TRANSFORM_WORKERS", _parse_int(1), "2", "tables transformed in parallel"),
    Setting("ETL_TRANSFORM_FASTPATH", _parse_bool, "true", "read plain tables with binary COPY + the C encoder"),
    Setting("ETL_VALIDATE_SAMPLE", _parse_int(0), "0", "documents checked per collection (0: all)"),
    Setting("ETL_ROLLBACK_ON_INVALID", _parse_bool, "false", "restore the pre-load backup on exit 4"),
    Setting("ETL_NODE", _parse_str, "node", "Node.js executable for the TypeScript/Zod generators"),
    Setting("ETL_CONTRACT_SAMPLE", _parse_int(1), "1000", "documents sampled per collection by test-data"),
    Setting("CLOUDWATCH_LOG_GROUP", _parse_str, "", "CloudWatch Logs group (empty: off)"),
    Setting("CLOUDWATCH_LOG_STREAM", _parse_str, "etl", "CloudWatch Logs stream prefix"),
    Setting("CLOUDWATCH_ENDPOINT_URL", _parse_http_url, "", "CloudWatch endpoint (empty: AWS)"),
    Setting("ETL_GUARD_MAX_SHRINK", _parse_percent, "50%", "largest drop in a collection's count a load accepts"),
    Setting("ETL_GUARD_MAX_SHRINK_COLLECTIONS", _parse_percent_map, "",
            "per-collection limits, e.g. daily_metrics=90%,audiences=100%"),
    Setting("ETL_GUARD_TIMESTAMP_COLUMNS", _parse_list, "updated_at,modified_at,last_modified,last_updated_at",
            "columns whose newest value must not go back"),
    Setting("ALERT_ON", _parse_alert_on, "failure,pending,guard", "run outcomes that send an alert"),
    Setting("ALERT_WEBHOOK_URL", _parse_webhook_url, "", "webhook receiving a JSON alert (empty: off)", secret=True),
    Setting("ALERT_WEBHOOK_FORMAT", _parse_choice("json", "slack"), "json", "json, or slack for {\"text\": …}"),
    Setting("ALERT_SMTP_HOST", _parse_str, "", "SMTP server for alert mails (empty: off)"),
    Setting("ALERT_SMTP_PORT", _parse_int(1), "587", "SMTP port"),
    Setting("ALERT_SMTP_TLS", _parse_choice("starttls", "ssl", "none"), "starttls", "starttls, ssl or none"),
    Setting("ALERT_SMTP_USER", _parse_str, "", "SMTP login (empty: none)"),
    Setting("ALERT_SMTP_PASSWORD", _parse_str, "", "SMTP password", secret=True),
    Setting("ALERT_SMTP_FROM", _parse_str, "", "sender address (empty: etl@<host>)"),
    Setting("ALERT_SMTP_TO", _parse_addresses, "", "recipients, comma-separated"),
    Setting("ALERT_TIMEOUT", _parse_seconds, "10", "seconds per alert attempt"),
    Setting("ALERT_RETRIES", _parse_int(0), "2", "further attempts after a failed alert"),
)
BY_KEY = {s.key: s for s in SETTINGS}


@dataclass
class Config:
    """Effective settings. `values[key]` is parsed; `origins[key]` says where it came from."""

    values: dict[str, Any]
    origins: dict[str, str]
    raw: dict[str, str] = field(default_factory=dict)

    def __getitem__(self, key: str) -> Any:
        return self.values[key]

    def __getattr__(self, name: str) -> Any:
        try:
            return self.values[name.upper()]
        except KeyError:
            raise AttributeError(name) from None

    def get(self, key: str, default: Any = None) -> Any:
        return self.values.get(key, default)

    def with_overrides(self, overrides: Mapping[str, Any], origin: str = "flag") -> "Config":
        """A copy with flag values applied (None means: flag not given)."""
        layers = {k: v for k, v in overrides.items() if v is not None}
        return _build(self.raw | {k: str(v) for k, v in layers.items()},
                      self.origins | {k: origin for k in layers})

    @property
    def pg_conninfo(self) -> str:
        """libpq connection string for the local database (password from settings, never logged)."""
        return pg_conninfo(self, self["LOCAL_PG_DB"])

    def describe(self) -> list[tuple[str, str, str]]:
        """(key, shown value, origin) for every setting; secrets masked."""
        rows = []
        for s in SETTINGS:
            shown = mask(s.key, self.raw.get(s.key, ""))
            rows.append((s.key, shown, self.origins.get(s.key, "default")))
        return rows


def pg_conninfo(cfg: Config, dbname: str) -> str:
    params = dict(host=cfg["LOCAL_PG_HOST"], port=cfg["LOCAL_PG_PORT"], user=cfg["LOCAL_PG_USER"],
                  dbname=dbname, connect_timeout=10)
    if cfg["LOCAL_PG_PASSWORD"]:
        params["password"] = cfg["LOCAL_PG_PASSWORD"]
    return make_conninfo(params)


# libpq's key=value connection strings, written and read here rather than through
# psycopg.conninfo: importing psycopg costs a command ~0.1 s, most of what a transform with
# nothing to do spends. tests/test_config.py checks both against psycopg's own functions.

_NEEDS_QUOTES = re.compile(r"[\s'\\]")


def make_conninfo(params: Mapping[str, Any]) -> str:
    """`key=value ...`, values single-quoted (with backslash escapes) when they need it."""
    def quote(value: Any) -> str:
        text = str(value)
        if text and not _NEEDS_QUOTES.search(text):
            return text
        return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"

    return " ".join(f"{key}={quote(value)}" for key, value in params.items() if value is not None)


def client_connection(conninfo: str) -> tuple[str, dict[str, str], dict[str, str]]:
    """For a libpq client program (psql, pg_dump): the connection string without the password
    (for `-d`), the environment carrying the password as PGPASSWORD (`ps` shows command lines,
    not environments), and the remaining parameters."""
    params = conninfo_params(conninfo)
    password = params.pop("password", None)
    env = dict(os.environ)
    if password:
        env["PGPASSWORD"] = password
    return make_conninfo(params), env, params


def conninfo_params(conninfo: str) -> dict[str, str]:
    """The parameters of a connection string: libpq's `key=value` form (read here) or a
    `postgresql://` URI (read by psycopg)."""
    if "://" in conninfo:
        from psycopg.conninfo import conninfo_to_dict

        return {k: str(v) for k, v in conninfo_to_dict(conninfo).items()}
    params: dict[str, str] = {}
    i, n = 0, len(conninfo)
    while True:
        while i < n and conninfo[i].isspace():
            i += 1
        if i >= n:
            return params
        eq = conninfo.find("=", i)
        if eq < 0:
            raise ConfigError(f"malformed connection string: a parameter without '=' at character {i + 1}")
        key = conninfo[i:eq].strip()
        i = eq + 1
        while i < n and conninfo[i].isspace():
            i += 1
        quoted = i < n and conninfo[i] == "'"
        i += quoted
        chars = []
        while i < n and (conninfo[i] != "'" if quoted else not conninfo[i].isspace()):
            if conninfo[i] == "\\" and i + 1 < n:
                i += 1
            chars.append(conninfo[i])
            i += 1
        if quoted:
            if i >= n:
                raise ConfigError(f"malformed connection string: unterminated quote in {key}")
            i += 1
        params[key] = "".join(chars)


def mask_uri(value: str) -> str:
    """Replace the password of a URI or key=value DSN with ***."""
    if "://" in value:
        parts = urlsplit(value)
        if parts.password:
            netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
            return urlunsplit(parts._replace(netloc=netloc))
        return value
    return re.sub(r"(password\s*=\s*)(\S+)", r"\1***", value)


def mask(key: str, value: str) -> str:
    setting = BY_KEY.get(key)
    if setting and setting.secret and value:
        if key in ("MONGO_URI", "PROD_PG_DSN"):
            return mask_uri(value)
        if key == "ALERT_WEBHOOK_URL":
            return mask_webhook(value)
        return "***"
    return value


def secrets_of(cfg: Config) -> list[str]:
    """Literal secret strings (passwords) that must never appear in logs or reports. For a
    URI or DSN only its password is secret; the rest (host, database) is worth showing."""
    found: list[str] = []
    for s in SETTINGS:
        value = cfg.raw.get(s.key, "")
        if not (s.secret and value):
            continue
        if s.key == "ALERT_WEBHOOK_URL":
            found += _webhook_secrets(value)
        elif "://" in value:
            pw = urlsplit(value).password
            if pw:
                found.append(pw)
        elif "=" in value:
            found += re.findall(r"password\s*=\s*(\S+)", value)
        elif s.key not in ("MONGO_URI", "PROD_PG_DSN"):
            found.append(value)
    return found


def read_env_file(path: Path) -> dict[str, str]:
    """KEY=VALUE lines; '#' comments; optional quotes; `export ` prefix allowed."""
    values: dict[str, str] = {}
    for lineno, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        text = line.strip()
        if not text or text.startswith("#"):
            continue
        if text.startswith("export "):
            text = text[7:].lstrip()
        key, sep, value = text.partition("=")
        key = key.strip()
        if not sep or not re.fullmatch(r"[A-Z_][A-Z0-9_]*", key):
            raise ConfigError(f"{path.name}:{lineno}: expected KEY=VALUE, got {line.strip()[:60]!r}")
        value = value.strip()
        if len(value) >= 2 and value[0] == value[-1] and value[0] in "'\"":
            value = value[1:-1]
        values[key] = value
    return values


def _build(raw: dict[str, str], origins: dict[str, str]) -> Config:
    values: dict[str, Any] = {}
    for s in SETTINGS:
        text = raw.get(s.key, s.default)
        try:
            values[s.key] = s.parse(text)
        except (ValueError, ConfigError) as exc:
            where = origins.get(s.key, "default")
            detail = exc.args[0] if exc.args else str(exc)
            raise ConfigError(f"{s.key} (from {where}): {mask(s.key, str(detail))}") from None
    return Config(values=values, origins=origins, raw={s.key: raw.get(s.key, s.default) for s in SETTINGS})


def load_config(
    overrides: Mapping[str, Any] | None = None,
    *,
    root: Path | None = None,
    environ: Mapping[str, str] | None = None,
) -> Config:
    """Read pipeline.env, pipeline.local.env, the environment, then `overrides` (flags)."""
    root = root or paths.root
    environ = os.environ if environ is None else environ
    raw: dict[str, str] = {}
    origins: dict[str, str] = {}
    for name in ("pipeline.env", "pipeline.local.env"):
        path = root / name
        if path.is_file():
            for key, value in read_env_file(path).items():
                if key in BY_KEY:
                    raw[key], origins[key] = value, name
    for s in SETTINGS:
        if s.key in environ:
            raw[s.key], origins[s.key] = environ[s.key], "environment"
    for key, value in (overrides or {}).items():
        if value is not None:
            raw[key], origins[key] = str(value), "flag"
    return _build(raw, origins)
