"""Throw-away TLS certificates for the URL tests: a CA, server and client certificates, a
PKCS#12 client identity. Needs the ``cryptography`` package (pinned in
requirements-dev.txt)."""

from __future__ import annotations

import datetime
import ipaddress
from dataclasses import dataclass
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.serialization import pkcs12
from cryptography.x509.oid import NameOID

_PEM = serialization.Encoding.PEM


def _name(common_name: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, common_name)])


def _write(path: Path, data: bytes, mode: int = 0o644) -> Path:
    path.write_bytes(data)
    path.chmod(mode)
    return path


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(_PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption())


@dataclass(frozen=True)
class Authority:
    """A CA that signs certificates, written as ``NAME.crt`` into ``folder``."""

    name: str
    key: ec.EllipticCurvePrivateKey
    certificate: x509.Certificate
    folder: Path

    @classmethod
    def create(cls, folder: Path, name: str = "fast-note-test-ca") -> Authority:
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        certificate = (
            x509.CertificateBuilder()
            .subject_name(_name(name))
            .issuer_name(_name(name))
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=2))
            .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=True,
                    content_commitment=False,
                    key_encipherment=False,
                    data_encipherment=False,
                    key_agreement=False,
                    key_cert_sign=True,
                    crl_sign=True,
                    encipher_only=False,
                    decipher_only=False,
                ),
                critical=True,
            )
            .sign(key, hashes.SHA256())
        )
        folder.mkdir(parents=True, exist_ok=True)
        _write(folder / f"{name}.crt", certificate.public_bytes(_PEM))
        return cls(name, key, certificate, folder)

    @property
    def path(self) -> Path:
        return self.folder / f"{self.name}.crt"

    def issue(
        self, common_name: str, *, hosts: tuple[str, ...] = ()
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A certificate for ``common_name`` (a server's with ``hosts`` as its names and
        addresses, else a client's)."""
        key = ec.generate_private_key(ec.SECP256R1())
        now = datetime.datetime.now(datetime.UTC)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_name(common_name))
            .issuer_name(self.certificate.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(now - datetime.timedelta(hours=1))
            .not_valid_after(now + datetime.timedelta(days=1))
        )
        if hosts:
            names: list[x509.GeneralName] = []
            for host in hosts:
                try:
                    names.append(x509.IPAddress(ipaddress.ip_address(host)))
                except ValueError:
                    names.append(x509.DNSName(host))
            builder = builder.add_extension(x509.SubjectAlternativeName(names), critical=False)
        return builder.sign(self.key, hashes.SHA256()), key

    def client_pem(self, user: str) -> tuple[Path, Path]:
        """A client certificate for ``user`` and its key (mode 0600) as PEM files."""
        certificate, key = self.issue(user)
        crt = _write(self.folder / f"{user}.crt", certificate.public_bytes(_PEM))
        return crt, _write(self.folder / f"{user}.key", _key_pem(key), 0o600)

    def client_pkcs12(self, user: str, password: str) -> Path:
        """A PKCS#12 identity of ``user`` (certificate and key) protected by ``password``."""
        certificate, key = self.issue(user)
        data = pkcs12.serialize_key_and_certificates(
            user.encode(),
            key,
            certificate,
            None,
            serialization.BestAvailableEncryption(password.encode()),
        )
        return _write(self.folder / f"{user}.p12", data, 0o600)

    def server_pem(self, name: str, hosts: tuple[str, ...]) -> tuple[Path, Path]:
        """A server certificate for ``hosts`` (names and addresses) and its key (0600)."""
        certificate, key = self.issue(hosts[0], hosts=hosts)
        crt = _write(self.folder / f"{name}.crt", certificate.public_bytes(_PEM))
        return crt, _write(self.folder / f"{name}.key", _key_pem(key), 0o600)
