"""Throw-away MQTT brokers for tests, demos and benchmarks.

``start_broker()`` runs the Mosquitto binary on a free 127.0.0.1 port with a generated config (never
the machine's own broker on 1883), or, where Mosquitto is not installed, the embedded amqtt broker in
a child process. It returns once the port accepts connections.

    with start_broker(persistence=True) as broker:
        ...  # broker.host, broker.port
        broker.stop()   # SIGTERM: Mosquitto saves its queues to data_dir
        broker.start()  # same port, queues restored
        broker.kill()   # SIGKILL: like a power cut
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

HOST = "127.0.0.1"
MOSQUITTO_FALLBACK = "/usr/sbin/mosquitto"


class BrokerError(RuntimeError):
    """A test broker could not be started; the message includes the broker's own last log lines."""


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((HOST, 0))
        return int(sock.getsockname()[1])


def _port_free(host: str, port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as the broker will
        try:
            sock.bind((host, port))
        except OSError:
            return False
    return True


def _run(command: list[str], what: str) -> None:
    try:
        subprocess.run(command, check=True, capture_output=True, timeout=30)
    except (OSError, subprocess.SubprocessError) as exc:
        detail = getattr(exc, "stderr", b"") or b""
        raise BrokerError(f"could not {what} ({exc}) {detail.decode(errors='replace').strip()}") from exc


def find_mosquitto() -> str | None:
    found = shutil.which("mosquitto")
    if found:
        return found
    return MOSQUITTO_FALLBACK if os.access(MOSQUITTO_FALLBACK, os.X_OK) else None


class Broker:
    """One broker process on `host`:`port`; `kind` is ``"mosquitto"`` or ``"amqtt"``."""

    def __init__(
        self,
        port: int,
        data_dir: Path,
        *,
        kind: str,
        persistence: bool = False,
        users: dict[str, str] | None = None,
        acl: str | None = None,
        tls: bool = False,
        owns_dir: bool = False,
        ready_timeout: float = 15.0,
    ) -> None:
        self.host = HOST
        self.port = port
        self.kind = kind
        self.data_dir = data_dir
        self.persistence = persistence
        self.users = dict(users or {})
        self.acl = acl
        self.tls = tls
        # With tls=True: a throw-away CA, and a client certificate it signed (the broker requires one).
        self.ca_file = data_dir / "ca.crt"
        self.client_cert = data_dir / "client.crt"
        self.client_key = data_dir / "client.key"
        self.ready_timeout = ready_timeout
        self._owns_dir = owns_dir
        self._proc: subprocess.Popen[bytes] | None = None
        self.log_path = data_dir / "broker.log"
        self.config_path = data_dir / ("mosquitto.conf" if kind == "mosquitto" else "amqtt.yaml")
        self._write_config()

    def __repr__(self) -> str:
        return f"<Broker {self.kind} {self.host}:{self.port} {'running' if self.running else 'stopped'}>"

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def _write_config(self) -> None:
        if self.kind == "mosquitto":
            lines = [
                f"listener {self.port} {self.host}",
                f"allow_anonymous {'false' if self.users else 'true'}",
                f"persistence {'true' if self.persistence else 'false'}",
                f"persistence_location {self.data_dir}/",
                # Save sessions every second, so even a killed broker comes back knowing its
                # subscribers (the default saves only on a clean shutdown).
                "autosave_interval 1",
                "log_dest stderr",
                "log_type error",
                "log_type warning",
                "log_type notice",
                # Test subscribers may fall far behind a fast publisher: keep their queues whole.
                "max_queued_messages 0",
                "max_inflight_messages 1000",
                "set_tcp_nodelay true",  # no Nagle stalls on PUBACKs and deliveries over loopback
            ]
            if self.users:
                passwords = self.data_dir / "passwords"
                passwords.write_text("".join(f"{user}:{pw}\n" for user, pw in self.users.items()))
                _run(["mosquitto_passwd", "-U", str(passwords)], "hash the test broker's passwords")
                lines.append(f"password_file {passwords}")
            if self.acl is not None:
                acl_path = self.data_dir / "acl"
                acl_path.write_text(self.acl)
                lines.append(f"acl_file {acl_path}")
            if self.tls:
                self._make_certificates()
                d = self.data_dir
                lines += [
                    f"cafile {d / 'ca.crt'}",
                    f"certfile {d / 'server.crt'}",
                    f"keyfile {d / 'server.key'}",
                    "require_certificate true",
                ]
            if os.geteuid() == 0:
                lines.append("user root")  # otherwise it drops to 'mosquitto', who cannot write data_dir
            self.config_path.write_text("\n".join(lines) + "\n")
        else:
            config = {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
            }
            self.config_path.write_text(json.dumps(config))  # JSON is YAML

    def _make_certificates(self) -> None:
        d = self.data_dir
        ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
        ca_key = str(d / "ca.key")
        subject = "/CN=uncia test CA"
        _run(
            [
                "openssl",
                "req",
                "-x509",
                *ec,
                "-keyout",
                ca_key,
                "-out",
                str(self.ca_file),
                "-days",
                "2",
                "-subj",
                subject,
            ],
            "make a test CA",
        )
        extensions = {"server": "subjectAltName=IP:127.0.0.1", "client": "extendedKeyUsage=clientAuth"}
        for name, extension in extensions.items():
            key, csr, crt, ext = (str(d / f"{name}.{suffix}") for suffix in ("key", "csr", "crt", "ext"))
            Path(ext).write_text(extension + "\n")
            _run(
                ["openssl", "req", *ec, "-keyout", key, "-out", csr, "-subj", f"/CN=uncia test {name}"],
                f"make the test {name} key",
            )
            signing = ["-CA", str(self.ca_file), "-CAkey", ca_key, "-CAcreateserial", "-days", "2"]
            _run(
                ["openssl", "x509", "-req", "-in", csr, *signing, "-out", crt, "-extfile", ext],
                f"sign the test {name} certificate",
            )

    def _command(self) -> list[str]:
        if self.kind == "mosquitto":
            binary = find_mosquitto()
            if binary is None:
                raise BrokerError("the mosquitto binary is not installed any more")
            return [binary, "-c", str(self.config_path)]
        return [sys.executable, "-m", "amqtt.scripts.broker_script", "-c", str(self.config_path)]

    def start(self) -> Broker:
        """Start (or restart) the broker on the same port; returns once it accepts connections."""
        if self.running:
            return self
        if not _port_free(self.host, self.port):
            # Checked first: the readiness probe below would happily connect to whoever has it.
            raise BrokerError(f"cannot start {self.kind}: port {self.port} on {self.host} is already in use")
        with open(self.log_path, "ab") as log:
            self._proc = subprocess.Popen(
                self._command(), stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL
            )
        deadline = time.monotonic() + self.ready_timeout
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                raise BrokerError(
                    f"{self.kind} on port {self.port} exited at start (code {self._proc.returncode}): "
                    f"{self._log_tail()}"
                )
            with contextlib.suppress(OSError), socket.create_connection((self.host, self.port), timeout=0.5):
                return self
            time.sleep(0.02)
        self.kill()
        raise BrokerError(
            f"{self.kind} did not accept connections on {self.address} within {self.ready_timeout:.0f} s: "
            f"{self._log_tail()}"
        )

    def _log_tail(self) -> str:
        try:
            lines = self.log_path.read_text(errors="replace").strip().splitlines()
        except OSError:
            return "(no log)"
        return " | ".join(lines[-5:]) or "(empty log)"

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM and wait: Mosquitto saves its persistent sessions first."""
        self._end(signal.SIGTERM, timeout)

    def kill(self) -> None:
        """SIGKILL: the broker vanishes without saving anything, like a power cut."""
        self._end(signal.SIGKILL, 10.0)

    def _end(self, sig: signal.Signals, timeout: float) -> None:
        proc, self._proc = self._proc, None
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()

    def close(self) -> None:
        """Stop and remove the data directory if `start_broker` made it."""
        self.stop(timeout=5.0)
        if self._owns_dir:
            shutil.rmtree(self.data_dir, ignore_errors=True)

    def __enter__(self) -> Broker:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def start_broker(
    port: int | None = None,
    *,
    data_dir: Path | None = None,
    persistence: bool = False,
    kind: str | None = None,
    users: dict[str, str] | None = None,
    acl: str | None = None,
    tls: bool = False,
) -> Broker:
    """Start a broker on 127.0.0.1 (`port` or a free one); Mosquitto if installed, else amqtt.

    `kind` forces ``"mosquitto"`` or ``"amqtt"``. Mosquitto only: `persistence` keeps sessions and
    queued messages across `stop()`/`start()`; `users` ({name: password}) turns off anonymous
    access; `acl` is the text of a Mosquitto ACL file; `tls` serves TLS only, with a generated CA (`Broker.ca_file`) and a required client
    certificate (`Broker.client_cert`, `Broker.client_key`).
    """
    if kind is None:
        kind = "mosquitto" if find_mosquitto() else "amqtt"
    if kind == "mosquitto" and not find_mosquitto():
        raise BrokerError("mosquitto is not installed (apt-get install mosquitto)")
    if kind not in ("mosquitto", "amqtt"):
        raise BrokerError(f"unknown broker kind {kind!r}: expected 'mosquitto' or 'amqtt'")
    if kind == "amqtt" and (persistence or users or tls or acl is not None):
        raise BrokerError(
            "the embedded amqtt broker here runs without persistence, passwords or TLS; install mosquitto"
        )
    owns = data_dir is None
    directory = Path(tempfile.mkdtemp(prefix="uncia-broker-")) if data_dir is None else Path(data_dir)
    directory.mkdir(parents=True, exist_ok=True)
    try:
        broker = Broker(
            port or free_port(),
            directory,
            kind=kind,
            persistence=persistence,
            users=users,
            acl=acl,
            tls=tls,
            owns_dir=owns,
        )
        return broker.start()
    except BaseException:
        if owns:
            shutil.rmtree(directory, ignore_errors=True)
        raise
