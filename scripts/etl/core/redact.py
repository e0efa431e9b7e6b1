"""Secrets out of every text the pipeline writes: configured passwords, and any password inside
a URI or a key=value DSN, become ***.
"""

from __future__ import annotations

import re
from typing import Any, Iterable

from etl.core.config import Config, secrets_of

_URI_PASSWORD = re.compile(r"(://[^:/@\s]+:)([^@\s]+)(@)")


_KV_PASSWORD = re.compile(r"(password\s*=\s*)(\S+)", re.IGNORECASE)


class Redactor:
    """Replaces every configured secret, and any password inside a URI or DSN, with ***."""

    def __init__(self, secrets: Iterable[str] = ()):
        # Longest first, so a secret containing another is replaced whole.
        self.secrets = sorted({s for s in secrets if s}, key=len, reverse=True)

    def __call__(self, text: str) -> str:
        for secret in self.secrets:
            text = text.replace(secret, "***")
        text = _URI_PASSWORD.sub(r"\1***\3", text)
        return _KV_PASSWORD.sub(r"\1***", text)

    def obj(self, value: Any) -> Any:
        """A copy of a JSON-like value with every string redacted."""
        if isinstance(value, str):
            return self(value)
        if isinstance(value, dict):
            return {k: self.obj(v) for k, v in value.items()}
        if isinstance(value, (list, tuple)):
            return [self.obj(v) for v in value]
        return value


def redactor_for(cfg: Config | None) -> Redactor:
    return Redactor(secrets_of(cfg) if cfg is not None else ())
