"""Password redaction: every output of the migrator goes through ``redact``.

A password is masked where it stands as a secret: the userinfo of a URL and the value of
a ``password=``-like parameter (URL query or libpq conninfo). Text that merely equals the
password elsewhere (``?schema=public`` with the password ``public``) is left alone.
"""

from __future__ import annotations

import re

MASK = "****"
# scheme://user:secret@ — up to the last @ of the token, so an unencoded @ in the
# password is masked too; the placeholder of the documented example stays readable.
_USERINFO = re.compile(r"([a-z][a-z0-9+.-]*://[^:/@\s]*:)(?!PASSWORD@)[^\s]*@", re.IGNORECASE)
# password=…, sslpassword=…, api_key=… in a URL query or a conninfo string ('quoted' too).
_SECRET_PARAM = re.compile(
    r"((?<![\w-])(?:api_key|password|sslpassword)\s*=\s*)('(?:[^'\\]|\\.)*'|[^&\s]*)", re.IGNORECASE
)
_AUTHORITY = re.compile(r"^(\s*[a-z][a-z0-9+.-]*://)(.*)@", re.IGNORECASE | re.DOTALL)


def redact(text: str) -> str:
    """``text`` with every URL password and password parameter replaced by ``****``."""
    if "=" not in text and "://" not in text:  # neither pattern can match (most log lines)
        return text
    text = _USERINFO.sub(rf"\1{MASK}@", text)
    return _SECRET_PARAM.sub(rf"\1{MASK}", text)


def mask_userinfo(url: str) -> str:
    """The URL with its whole userinfo masked (``scheme://****@host…``): for a URL that
    does not parse, where the user and password cannot be told apart."""
    return redact(_AUTHORITY.sub(rf"\1{MASK}@", url, count=1))
