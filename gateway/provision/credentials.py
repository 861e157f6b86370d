"""MQTT credentials: generated passwords in Mosquitto's password-file format, and the site CA.

Passwords are 256 random bits from `secrets` (43 URL-safe characters: no ':' or whitespace, so they
can never break a password-file line). Mosquitto stores only a hash of each, in the format
``mosquitto_passwd`` writes (mosquitto 2.x, ``src/mosquitto_passwd.c`` ``output_new_password``)::

    <username>:$7$<iterations>$<base64 salt, 12 bytes>$<base64 PBKDF2-HMAC-SHA512, 64 bytes>

``7`` is mosquitto's ``pw_sha512_pbkdf2`` hash type. The broker reads the iteration count from each
line, so we may use more than mosquitto_passwd's default of 101. We hash in Python (hashlib) rather
than calling ``mosquitto_passwd`` so a technician's laptop needs no Mosquitto, and the plaintext never
appears on a command line (``mosquitto_passwd -b`` would put it in the process list).

The site CA (EC P-256, made with `cryptography`) signs the gateway broker's server certificate, so
units know they talk to their own station, and, with ``auth = "certificate"``, every identity's
client certificate; revoked certificates go into a CRL that Mosquitto reads (``crlfile``).

Field clocks: a Pi without a real-time clock may boot offline with a time from before provisioning
(the image's build date). Certificates and the CRL are therefore valid from `VALID_FROM`, long before
any unit is provisioned, and for `VALID_YEARS`: a unit in the mountains must not lock itself out
because a date passed. Revocation, not expiry, is how a lost unit is shut out.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import hmac
import ipaddress
import secrets
from dataclasses import dataclass

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

HASH_TYPE = 7  # mosquitto's pw_sha512_pbkdf2
SALT_BYTES = 12  # mosquitto 2.0 SALT_LEN: a salt of another length is refused when the file is read
ITERATIONS = 1000  # mosquitto_passwd uses 101; the hash is checked once per CONNECT, ~1 ms on a Pi 4
PASSWORD_BYTES = 32

VALID_FROM = dt.datetime(2020, 1, 1, tzinfo=dt.UTC)
VALID_YEARS = 30


class CredentialError(ValueError):
    """A stored credential cannot be read (a damaged site state); the message says which file."""


def generate_password() -> str:
    """A new random password: 256 bits, URL-safe base64 (never contains ':' or whitespace)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


def mosquitto_hash(password: str, *, salt: bytes | None = None, iterations: int = ITERATIONS) -> str:
    """The hash field of a Mosquitto password-file line: ``$7$<iterations>$<salt>$<hash>``."""
    salt = secrets.token_bytes(SALT_BYTES) if salt is None else salt
    if len(salt) != SALT_BYTES:
        raise ValueError(f"mosquitto expects a {SALT_BYTES}-byte salt, not {len(salt)} bytes")
    digest = hashlib.pbkdf2_hmac("sha512", password.encode("utf-8"), salt, iterations)
    b64 = base64.b64encode
    return f"${HASH_TYPE}${iterations}${b64(salt).decode()}${b64(digest).decode()}"


def verify_mosquitto_hash(password: str, encoded: str) -> bool:
    """True when `password` matches a ``$7$`` hash field (as the broker checks it)."""
    try:
        _, kind, iterations, salt, digest = encoded.split("$")
        if int(kind) != HASH_TYPE:
            return False
        expected = base64.b64decode(digest)
        actual = hashlib.pbkdf2_hmac("sha512", password.encode(), base64.b64decode(salt), int(iterations))
    except ValueError:
        return False
    return hmac.compare_digest(expected, actual)


def password_file(entries: dict[str, str]) -> str:
    """A Mosquitto password file from {username: hash field}, one ``user:hash`` line each, sorted."""
    return "".join(f"{user}:{entries[user]}\n" for user in sorted(entries))


# -- the site CA ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Issued:
    """A key and the certificate the site CA signed for it (both PEM)."""

    key_pem: bytes
    cert_pem: bytes
    serial: int


def _new_key() -> ec.EllipticCurvePrivateKey:
    # P-256: fast to make (tests make dozens), small on the wire, supported by every TLS stack.
    return ec.generate_private_key(ec.SECP256R1())


def _key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )


def _name(common_name: str, site: str) -> x509.Name:
    return x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, f"uncia site {site}"),
            x509.NameAttribute(NameOID.COMMON_NAME, common_name),
        ]
    )


def _until() -> dt.datetime:
    return VALID_FROM.replace(year=VALID_FROM.year + VALID_YEARS)


class SiteCA:
    """The certificate authority of one site: its key never leaves the site state directory."""

    def __init__(self, site: str, key: ec.EllipticCurvePrivateKey, cert: x509.Certificate) -> None:
        self.site = site
        self._key = key
        self.cert = cert

    @classmethod
    def create(cls, site: str) -> SiteCA:
        key = _new_key()
        name = _name(f"uncia {site} site CA", site)
        cert = (
            x509.CertificateBuilder()
            .subject_name(name)
            .issuer_name(name)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(VALID_FROM)
            .not_valid_after(_until())
            .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
            .add_extension(
                x509.KeyUsage(
                    digital_signature=False,
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
            .add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
            .sign(key, hashes.SHA256())
        )
        return cls(site, key, cert)

    @classmethod
    def load(cls, site: str, key_pem: bytes, cert_pem: bytes) -> SiteCA:
        try:
            key = serialization.load_pem_private_key(key_pem, password=None)
            cert = x509.load_pem_x509_certificate(cert_pem)
        except ValueError as exc:
            raise CredentialError(f"the site CA key or certificate is damaged ({exc})") from exc
        if not isinstance(key, ec.EllipticCurvePrivateKey):
            raise CredentialError("the site CA key is not an EC key")
        return cls(site, key, cert)

    def key_pem(self) -> bytes:
        return _key_pem(self._key)

    def cert_pem(self) -> bytes:
        return self.cert.public_bytes(serialization.Encoding.PEM)

    def _leaf(self, common_name: str, key: ec.EllipticCurvePrivateKey) -> x509.CertificateBuilder:
        return (
            x509.CertificateBuilder()
            .subject_name(_name(common_name, self.site))
            .issuer_name(self.cert.subject)
            .public_key(key.public_key())
            .serial_number(x509.random_serial_number())
            .not_valid_before(VALID_FROM)
            .not_valid_after(_until())
            .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
            .add_extension(
                x509.AuthorityKeyIdentifier.from_issuer_public_key(self._key.public_key()), critical=False
            )
        )

    def issue_client(self, username: str) -> Issued:
        """A client certificate whose CN is the MQTT username (``use_identity_as_username``)."""
        key = _new_key()
        cert = (
            self._leaf(username, key)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM), cert.serial_number)

    def issue_server(self, names: list[str]) -> Issued:
        """The broker's certificate, valid for each host name or IP address in `names`."""
        key = _new_key()
        alt: list[x509.GeneralName] = []
        for name in names:
            try:
                alt.append(x509.IPAddress(ipaddress.ip_address(name)))
            except ValueError:
                alt.append(x509.DNSName(name))
        cert = (
            self._leaf(f"uncia {self.site} broker", key)
            .add_extension(x509.SubjectAlternativeName(alt), critical=False)
            .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
            .sign(self._key, hashes.SHA256())
        )
        return Issued(_key_pem(key), cert.public_bytes(serialization.Encoding.PEM), cert.serial_number)

    def crl(self, revoked_serials: list[int], *, now: dt.datetime | None = None) -> bytes:
        """A CRL listing `revoked_serials`, valid (like the certificates) from `VALID_FROM` on.

        OpenSSL refuses every client once a CRL's nextUpdate has passed, so it lies decades ahead:
        the list is renewed whenever a unit is re-provisioned, not on a schedule.
        """
        when = now or dt.datetime.now(dt.UTC)
        builder = (
            x509.CertificateRevocationListBuilder()
            .issuer_name(self.cert.subject)
            .last_update(VALID_FROM)
            .next_update(_until())
        )
        for serial in sorted(set(revoked_serials)):
            builder = builder.add_revoked_certificate(
                x509.RevokedCertificateBuilder().serial_number(serial).revocation_date(when).build()
            )
        return builder.sign(self._key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)
