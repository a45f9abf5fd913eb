"""Password redaction: every output of the migrator goes through ``redact``."""

from __future__ import annotations

import re
from urllib.parse import unquote

_secrets: set[str] = set()
# URL parameters that carry a secret (Prisma Accelerate's api_key, libpq's passwords).
_SECRET_PARAM = re.compile(r"([?&](?:api_key|password|sslpassword)=)[^&\s]*", re.IGNORECASE)


def redact(text: str) -> str:
    """Replace every password this process has seen with ``****``."""
    for secret in _secrets:
        text = text.replace(secret, "****")
    text = re.sub(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)(?!PASSWORD@)[^@\s]*@", r"\1****@", text,
                  flags=re.IGNORECASE)
    return _SECRET_PARAM.sub(r"\1****", text)


def remember_password(url: str) -> None:
    """Note the URL's password so that no output ever shows it, even of a bad URL."""
    match = re.match(r"^\s*[a-z][a-z0-9+.-]*://[^:/@\s]*:([^@\s]+)@", url, re.IGNORECASE)
    if match:
        _secrets.add(match.group(1))
        _secrets.add(unquote(match.group(1)))
