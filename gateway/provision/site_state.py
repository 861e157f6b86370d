"""The site's provisioning state: the CA, every identity issued, and every revocation.

It lives in a folder next to the inventory (``<inventory>.state/`` unless told otherwise) and must be
kept, and backed up, with it: without it the next provisioning run cannot re-make a unit's bundle,
revoke a lost unit or sign new certificates. Layout::

    site.json          identities (kind, generation, password hash, certificate serial), revocations
    ca.crt             the site CA certificate (public)
    certs/<name>.crt   issued certificates (public); certs/broker.crt the broker's
    private/           mode 0700: ca.key, broker.key, <name>.password, <name>.key (each 0600)

Passwords are kept (0600, beside the CA key, which is worth more) so that provisioning again
without ``--reprovision`` re-makes an identical bundle, e.g. to re-flash a corrupted SD card.
``--reprovision ID`` issues new credentials and revokes the old: its password entry is replaced
(the broker refuses the old password) and its old certificate goes into the CRL.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import json
import os
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from gateway.provision.credentials import (
    CredentialError,
    Issued,
    SiteCA,
    generate_password,
    mosquitto_hash,
)

STATE_VERSION = 1


@dataclass
class Identity:
    name: str
    kind: str  # "unit", "staff" or "dashboard"
    generation: int
    issued: str
    password_hash: str
    cert_serial: int | None = None


@dataclass
class Revocation:
    name: str
    generation: int
    revoked: str
    reason: str
    cert_serial: int | None = None


def write_private(path: Path, data: bytes | str) -> None:
    """Write a secret: created 0600 before any byte is written, replaced atomically."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    with contextlib.suppress(FileNotFoundError):
        tmp.unlink()
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data.encode() if isinstance(data, str) else data)
        out.flush()
        os.fsync(out.fileno())
    os.replace(tmp, path)


def _now() -> str:
    return dt.datetime.now(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class SiteState:
    """Open with `SiteState.open(folder, site)`; change with `ensure`/`reissue`; then `save()`."""

    def __init__(self, directory: Path, site: str, ca: SiteCA, data: dict[str, Any]) -> None:
        self.dir = directory
        self.site = site
        self.ca = ca
        self.identities = {n: Identity(**i) for n, i in data.get("identities", {}).items()}
        self.revoked = [Revocation(**r) for r in data.get("revoked", [])]
        self.broker: dict[str, Any] = data.get("broker", {})
        self._secrets: dict[Path, bytes] = {}  # written on save()
        self.changed = False

    @property
    def private(self) -> Path:
        return self.dir / "private"

    @classmethod
    def open(cls, directory: str | Path, site: str) -> SiteState:
        directory = Path(directory)
        state_file = directory / "site.json"
        if not state_file.exists():
            directory.mkdir(mode=0o700, parents=True, exist_ok=True)
            (directory / "private").mkdir(mode=0o700, exist_ok=True)
            state = cls(directory, site, SiteCA.create(site), {})
            state._secrets[state.private / "ca.key"] = state.ca.key_pem()
            state.changed = True
            return state
        try:
            data = json.loads(state_file.read_text())
            ca = SiteCA.load(
                site, (directory / "private/ca.key").read_bytes(), (directory / "ca.crt").read_bytes()
            )
        except (OSError, ValueError) as exc:
            raise CredentialError(f"cannot read the site state in {directory} ({exc})") from exc
        if data.get("site") != site:
            raise CredentialError(
                f"{directory} is the state of site {data.get('site')!r}, not {site!r}: use --state to pick "
                "the right folder"
            )
        return cls(directory, site, ca, data)

    # -- identities -----------------------------------------------------------------------------
    def _issue(self, name: str, kind: str, generation: int, with_cert: bool) -> Identity:
        password = generate_password()
        self._secrets[self.private / f"{name}.password"] = password.encode()
        identity = Identity(name, kind, generation, _now(), mosquitto_hash(password))
        if with_cert:
            self._add_cert(identity)
        self.identities[name] = identity
        self.changed = True
        return identity

    def _add_cert(self, identity: Identity) -> None:
        issued = self.ca.issue_client(identity.name)
        self._secrets[self.private / f"{identity.name}.key"] = issued.key_pem
        self._secrets[self.dir / "certs" / f"{identity.name}.crt"] = issued.cert_pem
        identity.cert_serial = issued.serial
        self.changed = True

    def ensure(self, name: str, kind: str, *, with_cert: bool) -> Identity:
        """The identity's current credentials, issued now if it has none (or lacks a certificate)."""
        identity = self.identities.get(name)
        if identity is None:
            return self._issue(name, kind, 1, with_cert)
        if with_cert and identity.cert_serial is None:
            self._add_cert(identity)
        return identity

    def revoke(self, name: str, reason: str) -> Revocation | None:
        identity = self.identities.pop(name, None)
        if identity is None:
            return None
        revocation = Revocation(name, identity.generation, _now(), reason, identity.cert_serial)
        self.revoked.append(revocation)
        self.changed = True
        return revocation

    def reissue(self, name: str, kind: str, *, with_cert: bool) -> Identity:
        """New credentials for `name`; the old ones are revoked (password replaced, certificate in the CRL)."""
        old = self.identities.get(name)
        self.revoke(name, "re-provisioned")
        return self._issue(name, kind, (old.generation + 1) if old else 1, with_cert)

    def retire_missing(self, names: set[str]) -> list[str]:
        """Revoke identities no longer in the inventory; returns their names."""
        gone = sorted(set(self.identities) - names)
        for name in gone:
            self.revoke(name, "no longer in the inventory")
        return gone

    # -- secrets and files ----------------------------------------------------------------------
    def _read(self, path: Path) -> bytes:
        if path in self._secrets:
            return self._secrets[path]
        try:
            return path.read_bytes()
        except OSError as exc:
            raise CredentialError(f"the site state lacks {path} ({exc.strerror}); re-provision it") from exc

    def password(self, name: str) -> str:
        return self._read(self.private / f"{name}.password").decode()

    def web_password(self) -> str:
        """The staff page's password (user "staff"), made at the first provisioning of the site."""
        path = self.private / "web.password"
        if path not in self._secrets and not path.exists():
            self._secrets[path] = generate_password().encode()
            self.changed = True
        return self._read(path).decode()

    def client_key(self, name: str) -> bytes:
        return self._read(self.private / f"{name}.key")

    def client_cert(self, name: str) -> bytes:
        return self._read(self.dir / "certs" / f"{name}.crt")

    def password_entries(self) -> dict[str, str]:
        """{user: hash} for every current identity: what the broker's password file holds."""
        return {name: identity.password_hash for name, identity in self.identities.items()}

    def crl(self) -> bytes:
        """The CRL of every revoked certificate; signed anew only when the list changes."""
        serials = sorted({r.cert_serial for r in self.revoked if r.cert_serial is not None})
        path = self.dir / "crl.pem"
        if self.broker.get("crl_serials") == serials and path.exists() and path not in self._secrets:
            return path.read_bytes()
        if path not in self._secrets or self.broker.get("crl_serials") != serials:
            self._secrets[path] = self.ca.crl(serials)
            self.broker["crl_serials"] = serials
            self.changed = True
        return self._secrets[path]

    def broker_certificate(self, names: list[str]) -> Issued:
        """The broker's key and certificate for these host names/addresses (re-made when they change)."""
        if self.broker.get("names") != names or not (self.private / "broker.key").exists():
            if "cert_serial" in self.broker:  # the replaced certificate must not be usable any more
                self.revoked.append(
                    Revocation("broker", 0, _now(), "addresses changed", self.broker["cert_serial"])
                )
            issued = self.ca.issue_server(names)
            self._secrets[self.private / "broker.key"] = issued.key_pem
            self._secrets[self.dir / "certs" / "broker.crt"] = issued.cert_pem
            self.broker |= {"names": names, "cert_serial": issued.serial}
            self.changed = True
            return issued
        return Issued(
            self._read(self.private / "broker.key"),
            self._read(self.dir / "certs/broker.crt"),
            self.broker["cert_serial"],
        )

    def save(self) -> None:
        """Write every new secret (0600) and site.json. Nothing is written when nothing changed."""
        if not self.changed:
            return
        self.private.mkdir(mode=0o700, parents=True, exist_ok=True)
        os.chmod(self.dir, 0o700)  # the whole state is for the site's technicians only
        os.chmod(self.private, 0o700)
        (self.dir / "ca.crt").write_bytes(self.ca.cert_pem())
        for path, data in self._secrets.items():
            write_private(path, data)
        self._secrets.clear()
        data = {
            "version": STATE_VERSION,
            "site": self.site,
            "identities": {n: asdict(i) for n, i in sorted(self.identities.items())},
            "revoked": [asdict(r) for r in self.revoked],
            "broker": self.broker,
        }
        write_private(self.dir / "site.json", json.dumps(data, indent=2) + "\n")
        self.changed = False
