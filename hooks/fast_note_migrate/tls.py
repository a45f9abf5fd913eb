"""TLS in a Prisma URL, for libpq.

Prisma's PostgreSQL URL (quaint's ``postgres/url.rs``) and libpq name their TLS
parameters alike but mean different things:

- ``sslcert``: Prisma's CA certificate to trust (libpq's ``sslrootcert``); libpq's client
  certificate.
- ``sslidentity``: Prisma's client certificate and key, one PKCS#12 file (libpq has none).
- ``sslpassword``: Prisma's PKCS#12 password; libpq's client key passphrase.
- ``sslaccept``: Prisma's ``accept_invalid_certs`` (the default: nothing is verified) or
  ``strict`` (the chain and the host name are); libpq's ``sslmode`` decides instead.
- ``sslrootcert``, ``sslkey``: libpq's only.

A URL with ``sslrootcert`` or ``sslkey`` is read the libpq way; any other the Prisma way.
Then ``sslaccept=strict`` with ``sslmode=require`` is ``verify-full`` against the
``sslcert`` file (or the system's trusted CAs); ``accept_invalid_certs`` verifies nothing,
as in Prisma, and ``sslcert`` is only checked to be there. The PKCS#12 identity is
converted at each connection into a PEM certificate and key in a private temporary folder,
removed once connected (libpq reads them during the handshake only). Relative paths of
Prisma's parameters start at the folder that holds the migrations folder (Prisma: at
``./prisma``), those of libpq's at the working directory, as in libpq. A certificate file
that is missing or unreadable, or a TLS failure that retrying cannot fix, is a
configuration error that names the URL parameter.
"""

from __future__ import annotations

import logging
import os
import re
import tempfile
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .errors import ConfigError

log = logging.getLogger(__name__)

STRICT = "strict"
ACCEPT_INVALID = "accept_invalid_certs"
VERIFYING_MODES = ("verify-ca", "verify-full")
SYSTEM_ROOTS = "system"  # libpq >= 16: the system's trusted CAs
# libpq's own TLS parameters, passed on as they are.
LIBPQ_TLS_PARAMS = frozenset(
    {
        "sslmode",
        "sslcert",
        "sslkey",
        "sslrootcert",
        "sslpassword",
        "sslcrl",
        "sslcrldir",
        "sslsni",
        "sslcertmode",
        "sslnegotiation",
        "ssl_min_protocol_version",
        "ssl_max_protocol_version",
        "gssencmode",
        "channel_binding",
    }
)
PRISMA_TLS_PARAMS = frozenset({"sslidentity", "sslaccept"})
# Parameters naming files libpq or we read: checked before the first connection attempt.
_FILE_PARAMS = ("sslrootcert", "sslcert", "sslkey", "sslcrl")
PKCS12_HINT = (
    "install the Python package cryptography (pip install 'fast-note-migrate[pkcs12]'), "
    "or convert the identity once (openssl pkcs12 -in identity.p12 -clcerts -nokeys -out "
    "client.crt; openssl pkcs12 -in identity.p12 -nocerts -nodes -out client.key) and "
    "give it the libpq way: ?sslmode=require&sslrootcert=ca.crt&sslcert=client.crt&"
    "sslkey=client.key"
)


@dataclass(frozen=True)
class TlsSettings:
    """What the URL's TLS parameters ask of a connection, beyond the libpq parameters
    already in the conninfo."""

    identity: Path | None = None  # Prisma's sslidentity: a PKCS#12 file
    identity_password: str = field(default="", repr=False)  # its sslpassword
    files: tuple[tuple[str, Path], ...] = ()  # (URL parameter, file) that must be readable
    origins: Mapping[str, str] = field(default_factory=dict)  # libpq parameter -> URL's

    def origin(self, libpq_param: str) -> str:
        """How the URL gave ``libpq_param``: ``sslcert``, ``sslaccept=strict`` …"""
        return self.origins.get(libpq_param, libpq_param)


def _path(value: str, base: Path | None) -> Path:
    path = Path(value).expanduser()
    return path if path.is_absolute() or base is None else base / path


def settings(
    params: Mapping[str, str], conninfo: dict[str, str], config_dir: Path | None = None
) -> TlsSettings:
    """Map the URL's TLS parameters onto libpq's: ``conninfo`` (the libpq parameters the
    URL gave) is changed in place; ``config_dir`` is where Prisma's relative paths start."""
    libpq_style = "sslrootcert" in params or "sslkey" in params
    origins: dict[str, str] = {}
    files: list[tuple[str, Path]] = []
    identity: Path | None = None
    password = ""
    if libpq_style:
        if "sslidentity" in params:
            raise ConfigError(
                "the database URL mixes Prisma's sslidentity (a PKCS#12 client identity) "
                "with libpq's sslrootcert or sslkey",
                hint="use one or the other: Prisma's sslcert (the CA certificate to trust), "
                "sslidentity and sslpassword, or libpq's sslrootcert (the CA certificate), "
                "sslcert and sslkey (the client certificate and key)",
            )
        for name in _FILE_PARAMS:
            value = conninfo.get(name, "")
            if value and not (name == "sslrootcert" and value == SYSTEM_ROOTS):
                files.append((name, _path(value, None)))
    else:
        # Prisma's client identity is sslidentity: libpq's client certificate and key.
        origins.update(sslcert="sslidentity", sslkey="sslidentity")
        conninfo.pop("sslpassword", None)
        trust = conninfo.pop("sslcert", "")
        if trust:
            files.append(("sslcert", _path(trust, config_dir)))
        if "sslcrl" in conninfo:
            files.append(("sslcrl", _path(conninfo["sslcrl"], None)))
        if params.get("sslidentity"):
            identity = _path(params["sslidentity"], config_dir)
            files.append(("sslidentity", identity))
            password = params.get("sslpassword", "")
        elif params.get("sslpassword"):
            log.warning(
                "the URL parameter sslpassword has no effect without sslidentity (in "
                "Prisma's URL it is the PKCS#12 identity's password)"
            )
    _verification(params, conninfo, origins, files, libpq_style)
    if conninfo.get("sslmode") == "disable":
        given = sorted(k for k in params if k.startswith("ssl") and k != "sslmode")
        if given:
            log.warning(
                "the URL parameter(s) %s have no effect with sslmode=disable", ", ".join(given)
            )
    return TlsSettings(identity, password, tuple(files), origins)


def _verification(
    params: Mapping[str, str],
    conninfo: dict[str, str],
    origins: dict[str, str],
    files: list[tuple[str, Path]],
    libpq_style: bool,
) -> None:
    """sslaccept and the Prisma sslcert (the CA to trust) as libpq's sslmode and
    sslrootcert."""
    mode = conninfo.get("sslmode", "prefer")
    accept = params.get("sslaccept")
    if accept is not None and accept not in (STRICT, ACCEPT_INVALID):
        log.warning(
            "sslaccept=%s is neither strict nor accept_invalid_certs: read as strict, as "
            "Prisma reads it",
            accept,
        )
        accept = STRICT
    trust = next((path for name, path in files if name == "sslcert"), None)
    if not libpq_style and trust is not None:
        origins["sslrootcert"] = "sslcert"
    if accept == STRICT or (accept is None and mode in VERIFYING_MODES):
        if accept == STRICT and mode in ("require", "verify-ca"):
            conninfo["sslmode"] = "verify-full"
            origins["sslmode"] = f"sslaccept=strict with sslmode={mode}"
        elif mode not in VERIFYING_MODES:
            log.warning(
                "sslaccept=strict verifies the server's certificate only when TLS is "
                "required: with sslmode=%s it is not verified (add sslmode=require)",
                mode,
            )
            return
        if libpq_style:
            return
        if trust is not None:
            conninfo["sslrootcert"] = str(trust)
        elif _libpq_version() >= 160000:
            conninfo["sslrootcert"] = SYSTEM_ROOTS
            origins["sslrootcert"] = "sslaccept=strict (the system's trusted CAs)"
        return
    # accept_invalid_certs, given or Prisma's default: the certificate is not verified.
    if accept == ACCEPT_INVALID and (mode in VERIFYING_MODES or "sslrootcert" in conninfo):
        what = f"sslmode={mode}" if mode in VERIFYING_MODES else "sslrootcert"
        raise ConfigError(
            f"the database URL says sslaccept=accept_invalid_certs (do not verify the "
            f"server's certificate) and {what} (verify it)",
            hint="drop one of them: sslaccept=strict with sslmode=require verifies the "
            "server's certificate, sslaccept=accept_invalid_certs with sslmode=require "
            "encrypts without verifying",
        )
    if trust is not None and not libpq_style and mode != "disable":
        log.warning(
            "the certificate in sslcert is not used to verify the server: sslaccept is "
            "accept_invalid_certs (Prisma's default); add sslaccept=strict and "
            "sslmode=require to verify the server against it"
        )


def _libpq_version() -> int:
    import psycopg

    return int(psycopg.pq.version())


def check_files(tls: TlsSettings) -> None:
    """Every certificate and key file the URL names is a readable file: a configuration
    error naming the URL parameter otherwise (libpq skips some missing files silently)."""
    for name, path in tls.files:
        problem = ""
        if not path.exists():
            problem = "does not exist"
        elif not path.is_file():
            problem = "is not a file"
        elif not os.access(path, os.R_OK):
            problem = "is not readable"
        if problem:
            raise ConfigError(
                f"the file of the URL parameter {name} {problem}: {path}",
                hint=f"mount the file, or fix the path in the URL parameter {name}",
            )


@dataclass(frozen=True)
class Identity:
    """A client certificate (with its chain) and its private key, PEM-encoded."""

    certificate: bytes = field(repr=False)
    key: bytes = field(repr=False)


def load_identity(tls: TlsSettings) -> Identity | None:
    """Read the PKCS#12 identity of the URL (sslidentity, sslpassword), if any."""
    if tls.identity is None:
        return None
    try:
        from cryptography.hazmat.primitives import serialization
        from cryptography.hazmat.primitives.serialization import pkcs12
    except ImportError:
        raise ConfigError(
            "the URL parameter sslidentity (a PKCS#12 client identity) needs the Python "
            "package cryptography, which is not installed (libpq reads PEM files only)",
            hint=PKCS12_HINT,
        ) from None
    try:
        data = tls.identity.read_bytes()
    except OSError as exc:
        raise ConfigError(
            f"cannot read the file of the URL parameter sslidentity: {exc}",
            hint="mount the file, or fix the path in the URL parameter sslidentity",
        ) from None
    passwords = [tls.identity_password.encode()] if tls.identity_password else [None, b""]
    for password in passwords:
        try:
            key, certificate, chain = pkcs12.load_key_and_certificates(data, password)
            break
        except ValueError:
            continue
    else:
        raise ConfigError(
            f"the URL parameter sslidentity names a file that is not a PKCS#12 identity, "
            f"or sslpassword is not its password: {tls.identity}",
            hint="check the file and the URL parameter sslpassword (percent-encode / ? # & "
            "and % in it)",
        )
    if key is None or certificate is None:
        raise ConfigError(
            f"the PKCS#12 file of the URL parameter sslidentity holds no client "
            f"{'key' if key is None else 'certificate'}: {tls.identity}",
            hint="export the client certificate together with its private key",
        )
    encoding = serialization.Encoding.PEM
    return Identity(
        certificate=b"".join(c.public_bytes(encoding) for c in [certificate, *chain]),
        key=key.private_bytes(
            encoding, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        ),
    )


def _write_private(path: Path, data: bytes) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(data)


@contextmanager
def identity_files(identity: Identity | None) -> Iterator[dict[str, str]]:
    """libpq's sslcert and sslkey for ``identity``: PEM files in a private temporary
    folder (mode 0700, the files 0600), removed when the block ends."""
    if identity is None:
        yield {}
        return
    try:
        folder = tempfile.mkdtemp(prefix="fast-note-migrate-tls-")
    except OSError as exc:
        raise ConfigError(
            f"cannot write the client certificate of sslidentity to a temporary folder: {exc}",
            hint="give the process a writable temporary folder (TMPDIR, /tmp), or " + PKCS12_HINT,
        ) from None
    cert, key = Path(folder) / "client.crt", Path(folder) / "client.key"
    try:
        _write_private(cert, identity.certificate)
        _write_private(key, identity.key)
        yield {"sslcert": str(cert), "sslkey": str(key)}
    finally:
        for path in (cert, key):
            path.unlink(missing_ok=True)
        os.rmdir(folder)


# Errors of a connection attempt that retrying cannot fix, by the libpq parameter at fault.
_PERMANENT_TLS_ERRORS: tuple[tuple[str, str], ...] = (
    (r"server does not support SSL|weak sslmode|SSL support is not compiled", "sslmode"),
    (r"wrong version number|protocol version|no protocols available", "sslmode"),
    (r"root certificate file|root certificate paths|sslrootcert", "sslrootcert"),
    (r"certificate verify failed|self[- ]signed certificate", "sslrootcert"),
    (r"does not match host name", "host"),
    (r"certificate revocation list", "sslcrl"),
    (r"private key|sslkey", "sslkey"),
    (r"certificate file|certificate present", "sslcert"),
    (r"alert unknown ca|alert bad certificate|alert certificate", "sslcert"),
    (r"certificate required|valid client certificate|certificate authentication", "sslcert"),
    (r"invalid (ssl\w*|channel_binding|gssencmode) value", r"\1"),
)


def failed_parameter(message: str) -> str | None:
    """The libpq TLS parameter a connection error is about, when it is one that retrying
    cannot fix (a missing or untrusted certificate, a host name not in the server's
    certificate, TLS required of a server without it); None otherwise (a dropped or
    refused connection is retried)."""
    for pattern, parameter in _PERMANENT_TLS_ERRORS:
        found = re.search(pattern, message, re.IGNORECASE)
        if found:
            return found.expand(parameter)
    return None


_ADVICE = {
    "sslrootcert": "check the CA certificate the server's certificate is verified against",
    "host": "with sslaccept=strict (sslmode=verify-full) the host of the URL must be a "
    "name in the server's certificate",
    "sslmode": "the server and the URL disagree on TLS: enable TLS on the server, or "
    "change sslmode",
    "sslcrl": "check the certificate revocation list",
    "sslkey": "check the client key (a PEM file, mode 0600, matching the certificate)",
    "sslcert": "check the client certificate: the server must trust it and it must be "
    "issued to the user of the URL",
}


def config_error(tls: TlsSettings, parameter: str, display: str, message: str) -> ConfigError:
    """The configuration error for a TLS failure of ``parameter`` (libpq's name)."""
    origin = tls.origin(parameter)
    advice = _ADVICE.get(parameter, "check the TLS parameters")
    if re.search(r"invalid \S+ value", message):
        advice = (
            "sslmode takes disable, allow, prefer, require, verify-ca or verify-full"
            if parameter == "sslmode"
            else f"{parameter} has a value libpq does not know"
        )
    return ConfigError(
        f"TLS configuration error (URL parameter {origin}): cannot connect to {display}: {message}",
        hint=f"{advice}: fix the URL parameter {origin}; retrying does not help",
    )
