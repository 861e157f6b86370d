"""Security of a provisioned site, against a real Mosquitto running the *generated* configuration.

The broker is started from the gateway bundle's mosquitto.conf, password file, ACL, certificates and
CRL exactly as `uncia provision` wrote them; only ports and folders are changed for this machine
(tests/provision_helpers.py). Clients log in with the credentials from the bundles.

"Refused" and "not delivered" are proven, not assumed: a denied publish is silently dropped by
Mosquitto under MQTT 3.1.1, so a subscriber allowed to read it waits for a later marker message
from the same publisher (Mosquitto handles one connection's packets in order: when the marker
arrives, the denied message would already have arrived); under MQTT 5 the PUBACK says why.
"""

from __future__ import annotations

import shutil
import socket
import ssl
import subprocess
import threading
import uuid
import warnings
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion
from provision_helpers import INVENTORY, GeneratedBroker, generated_broker, provision_folder, write_inventory

from edge.broker import find_mosquitto, free_port
from edge.config import load_config
from gateway.provision.credentials import SiteCA

pytestmark = pytest.mark.skipif(
    find_mosquitto() is None, reason="needs the mosquitto binary (ACLs, TLS and CRLs are Mosquitto's)"
)

SITE = "helan"


@dataclass
class Site:
    out: Path
    inventory: Path
    work: Path
    broker: GeneratedBroker
    auth: str = "password"

    def tree(self, name: str) -> Path:
        return self.out / name

    def unit_file(self, unit: str, name: str) -> Path:
        return self.out / unit / "uncia/files/etc/uncia" / name

    def password(self, name: str) -> str:
        path = self.unit_file(name, "mqtt-password")
        if not path.exists():
            kind = "staff" if name == "dolma" else "dashboard"
            path = self.out / f"{kind}-{name}" / "password"
        return path.read_text().strip()

    @property
    def ca(self) -> str:
        return str(self.unit_file("gw-01", "ca.crt"))

    def cert(self, name: str) -> tuple[str, str]:
        unit = self.out / name / "uncia/files/etc/uncia"
        if unit.exists():
            return str(unit / "client.crt"), str(unit / "client.key")
        kind = "staff" if name == "dolma" else "dashboard"
        return str(self.out / f"{kind}-{name}/client.crt"), str(self.out / f"{kind}-{name}/client.key")


def _make_site(tmp: Path, auth: str) -> Any:
    inventory = write_inventory(tmp, auth=auth)
    out = tmp / "out"
    provision_folder(inventory, out)
    return inventory, out


@pytest.fixture(scope="module")
def password_site(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("password-site")
    inventory, out = _make_site(tmp, "password")
    with generated_broker(out / "gw-01", tmp) as broker:
        yield Site(out, inventory, tmp, broker, "password")


@pytest.fixture(scope="module")
def cert_site(tmp_path_factory: pytest.TempPathFactory):
    tmp = tmp_path_factory.mktemp("cert-site")
    inventory, out = _make_site(tmp, "certificate")
    with generated_broker(out / "gw-01", tmp) as broker:
        yield Site(out, inventory, tmp, broker, "certificate")


# -- a test client --------------------------------------------------------------------------------


class Client:
    """One MQTT client; `connect()` says "accepted" or how it was refused."""

    def __init__(
        self,
        site: Site,
        *,
        user: str | None = None,
        password: str | None = None,
        local: bool = False,
        cert: tuple[str, str] | None = None,
        v5: bool = False,
    ) -> None:
        self.port = site.broker.local_port if local else site.broker.tls_port
        protocol = mqtt.MQTTv5 if v5 else mqtt.MQTTv311
        self.client = mqtt.Client(
            CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:10]}", protocol=protocol
        )
        if user is not None:
            self.client.username_pw_set(user, password)
        if not local:
            certfile, keyfile = cert if cert else (None, None)
            self.client.tls_set(ca_certs=site.ca, certfile=certfile, keyfile=keyfile)
        self.messages: list[tuple[str, bytes]] = []
        self.subacks: dict[int, list[int]] = {}
        self.pubacks: dict[int, int] = {}
        self._cond = threading.Condition()
        self._result: str | None = None
        self.client.on_connect = self._on_connect
        self.client.on_disconnect = self._on_disconnect
        self.client.on_message = self._on_message
        self.client.on_subscribe = self._on_subscribe
        self.client.on_publish = self._on_publish

    def _set(self, result: str) -> None:
        with self._cond:
            if self._result is None:
                self._result = result
            self._cond.notify_all()

    def _on_connect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self._set("accepted" if not reason.is_failure else f"refused: {reason}")

    def _on_disconnect(self, c: Any, u: Any, flags: Any, reason: Any, props: Any) -> None:
        self._set(f"closed before CONNACK: {reason}")

    def _on_message(self, c: Any, u: Any, msg: mqtt.MQTTMessage) -> None:
        with self._cond:
            self.messages.append((msg.topic, bytes(msg.payload)))
            self._cond.notify_all()

    def _on_subscribe(self, c: Any, u: Any, mid: int, codes: Any, props: Any) -> None:
        with self._cond:
            self.subacks[mid] = [int(getattr(code, "value", code)) for code in codes]
            self._cond.notify_all()

    def _on_publish(self, c: Any, u: Any, mid: int, reason: Any, props: Any) -> None:
        with self._cond:
            self.pubacks[mid] = int(getattr(reason, "value", reason))
            self._cond.notify_all()

    def connect(self, timeout: float = 10.0) -> str:
        try:
            self.client.connect("127.0.0.1", self.port, keepalive=30)
        except (OSError, ssl.SSLError) as exc:
            return f"refused at the TLS handshake: {exc}"
        self.client.loop_start()
        with self._cond:
            self._cond.wait_for(lambda: self._result is not None, timeout)
        if self._result != "accepted":
            self.close()
        return self._result or "no answer"

    def _wait(self, predicate: Any, what: str, timeout: float = 10.0) -> None:
        with self._cond:
            if not self._cond.wait_for(predicate, timeout):
                raise TimeoutError(f"{what}; messages so far: {self.messages}")

    def subscribe(self, *filters: str) -> list[int]:
        _, mid = self.client.subscribe([(f, 1) for f in filters])
        self._wait(lambda: mid in self.subacks, f"no SUBACK for {filters}")
        return self.subacks[mid]

    def publish(self, topic: str, payload: bytes = b"x") -> int:
        """Publish at QoS 1 and wait for the PUBACK; returns its reason code (MQTT 5) or 0."""
        info = self.client.publish(topic, payload, qos=1)
        self._wait(lambda: info.mid in self.pubacks, f"no PUBACK for {topic}")
        return self.pubacks[info.mid]

    def wait_for(self, topic: str) -> list[tuple[str, bytes]]:
        """Wait for a message on `topic`; returns every message received up to and including it."""
        self._wait(lambda: any(t == topic for t, _ in self.messages), f"nothing arrived on {topic}")
        with self._cond:
            upto = next(i for i, (t, _) in enumerate(self.messages) if t == topic)
            return list(self.messages[: upto + 1])

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


@pytest.fixture
def clients():
    made: list[Client] = []

    def connect(site: Site, name: str | None = None, **kw: Any) -> Client:
        if name is not None and "password" not in kw and "cert" not in kw:
            if site.auth == "certificate" and not kw.get("local"):
                kw["cert"] = site.cert(name)
            else:
                kw["user"], kw["password"] = name, site.password(name)
        client = Client(site, **kw)
        result = client.connect()
        assert result == "accepted", f"{name} could not connect: {result}"
        made.append(client)
        return client

    yield connect
    for client in made:
        client.close()


def marker() -> bytes:
    return uuid.uuid4().hex.encode()


# -- authentication ---------------------------------------------------------------------------------


def test_anonymous_clients_are_refused_on_both_listeners(password_site: Site) -> None:
    assert Client(password_site, local=True).connect().startswith("refused: Not authorized")
    assert Client(password_site).connect().startswith("refused: Not authorized")


def test_wrong_password_is_refused(password_site: Site, clients: Any) -> None:
    wrong = Client(password_site, user="cam-01", password="not-the-password").connect()
    assert wrong.startswith("refused: Not authorized")
    # A unit's real password is no good for another identity either.
    swapped = Client(password_site, user="gw-01", password=password_site.password("cam-01"), local=True)
    assert swapped.connect().startswith("refused: Not authorized")
    clients(password_site, "cam-01")  # while the right one is accepted


def test_generated_unit_config_connects_with_its_credentials(password_site: Site, tmp_path: Path) -> None:
    # The camera's config as written, pointed at this machine's copy of /etc/uncia and this broker.
    etc = password_site.tree("cam-01") / "uncia/files/etc/uncia"
    text = (etc / "camera.toml").read_text().replace("/etc/uncia/", f"{etc}/")
    text = text.replace('host = "10.0.0.2"', 'host = "127.0.0.1"')
    text = text.replace("port = 8883", f"port = {password_site.broker.tls_port}")
    path = tmp_path / "camera.toml"
    path.write_text(text)
    settings = load_config(path).mqtt
    assert settings.tls and settings.username == "cam-01"
    client = Client(password_site, user=settings.username, password=settings.password())
    assert client.connect() == "accepted"
    client.close()


def test_plain_mqtt_on_the_tls_port_gets_nowhere(password_site: Site) -> None:
    with socket.create_connection(("127.0.0.1", password_site.broker.tls_port), timeout=5) as sock:
        # A bare MQTT CONNECT (client id "x", clean session) where a TLS ClientHello is expected.
        sock.sendall(bytes.fromhex("100d00044d5154540402001e000178"))
        sock.settimeout(5)
        try:
            answer = sock.recv(16)
        except (ConnectionResetError, TimeoutError):
            answer = b""
    assert not answer.startswith(b"\x20")  # never a CONNACK


# -- what each identity may publish and read --------------------------------------------------------


def test_unit_cannot_publish_under_another_units_topics(password_site: Site, clients: Any) -> None:
    gateway = clients(password_site, "gw-01", local=True)
    gateway.subscribe(f"uncia/{SITE}/#")
    cam1 = clients(password_site, "cam-01")
    forged = f"uncia/{SITE}/cam-02/gps0/event/fix"
    own = f"uncia/{SITE}/cam-01/unit/state/health"
    cam1.publish(forged, b"forged position")  # MQTT 3.1.1: PUBACK anyway, message dropped
    cam1.publish(own, marker())
    received = gateway.wait_for(own)
    assert forged not in [t for t, _ in received]


def test_mqtt5_denied_publish_is_answered_not_authorized(password_site: Site, clients: Any) -> None:
    cam1 = clients(password_site, "cam-01", v5=True)
    assert cam1.publish(f"uncia/{SITE}/cam-02/unit/state/availability") == 135  # Not authorized
    # Allowed: 0 (success) or 16 (success, "no matching subscribers"); every code below 128 is success.
    assert cam1.publish(f"uncia/{SITE}/cam-01/unit/state/availability") in (0, 16)


def test_unit_subscribing_to_everything_receives_only_what_it_may_read(
    password_site: Site, clients: Any
) -> None:
    cam1 = clients(password_site, "cam-01")
    codes = cam1.subscribe("uncia/#", "#", f"uncia/{SITE}/cam-01/unit/command/+")
    # Mosquitto 2.0.11 grants every one of these filters (SUBACK QoS 1, seen: [1, 1, 1]) and applies
    # the read ACL to each message as it is delivered; what counts is what arrives.
    assert codes[2] == 1
    gateway = clients(password_site, "gw-01", local=True)
    for topic in (
        f"uncia/{SITE}/cam-02/unit/command/ping",
        f"uncia/{SITE}/gw-01/gps0/event/fix",
        f"uncia-shared/{SITE}/collar-7/fix",
    ):
        gateway.publish(topic, b"not for cam-01")
    own = f"uncia/{SITE}/cam-01/unit/command/ping"
    gateway.publish(own, marker())
    received = cam1.wait_for(own)
    assert [t for t, _ in received] == [own], f"SUBACK codes {codes}"


def test_paired_camera_reads_its_partners_trigger_and_nothing_else(password_site: Site, clients: Any) -> None:
    cam1 = clients(password_site, "cam-01")
    cam1.subscribe(f"uncia/{SITE}/cam-02/+/event/pair_trigger", f"uncia/{SITE}/cam-02/#")
    cam2 = clients(password_site, "cam-02")
    cam2.publish(f"uncia/{SITE}/cam-02/cam0/event/capture", b"a capture")
    trigger = f"uncia/{SITE}/cam-02/cam0/event/pair_trigger"
    cam2.publish(trigger, marker())
    assert [t for t, _ in cam1.wait_for(trigger)] == [trigger]


def test_staff_read_exact_positions_and_write_only_station_requests(
    password_site: Site, clients: Any
) -> None:
    staff = clients(password_site, "dolma")
    staff.subscribe(f"uncia/{SITE}/+/+/event/fix")
    gateway = clients(password_site, "gw-01", local=True)
    gateway.subscribe(f"uncia/{SITE}/#")
    fix = f"uncia/{SITE}/gw-01/collar-7/event/fix"
    gateway.publish(fix, b'{"lat":38.8143,"lon":105.9387}')
    staff.wait_for(fix)
    denied = [
        f"uncia/{SITE}/cam-01/unit/command/capture",  # units take commands only from the hub
        f"uncia/{SITE}/dolma/gps0/event/fix",  # no staff identity may pose as a unit of its own name
        f"uncia/{SITE}/gw-01/gps0/event/fix",
        f"uncia-shared/{SITE}/collar-7/fix",
    ]
    for topic in denied:
        staff.publish(topic, b"from staff")
    request = f"uncia/{SITE}/gw-01/station/command/capture"
    staff.publish(request, marker())
    received = [t for t, _ in gateway.wait_for(request)]
    assert not set(denied) & set(received)


def test_dashboard_reads_the_coarsened_feed_but_no_exact_position(password_site: Site, clients: Any) -> None:
    dashboard = clients(password_site, "public-map")
    codes = dashboard.subscribe(f"uncia/{SITE}/+/+/event/fix", f"uncia/{SITE}/#", f"uncia-shared/{SITE}/#")
    assert codes[2] == 1
    gateway = clients(password_site, "gw-01", local=True)
    gateway.publish(f"uncia/{SITE}/gw-01/collar-7/event/fix", b'{"lat":38.8143,"lon":105.9387}')
    gateway.publish(f"uncia/{SITE}/cam-01/cam0/event/capture", b"capture with position")
    shared = f"uncia-shared/{SITE}/collar-7/fix"
    gateway.publish(shared, b'{"lat":38.81,"lon":105.94}')
    assert [t for t, _ in dashboard.wait_for(shared)] == [shared]


def test_nobody_but_the_hub_writes_the_shared_feed(password_site: Site, clients: Any) -> None:
    reader = clients(password_site, "public-map")
    reader.subscribe(f"uncia-shared/{SITE}/#")
    for name in ("public-map", "cam-01"):
        clients(password_site, name).publish(f"uncia-shared/{SITE}/collar-7/fix", b"fake position")
    hub = clients(password_site, "gw-01", local=True)
    real = f"uncia-shared/{SITE}/collar-9/fix"
    hub.publish(real, marker())
    assert [t for t, _ in reader.wait_for(real)] == [real]


# -- revocation ---------------------------------------------------------------------------------------


def test_reprovisioned_unit_old_password_is_refused(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, auth="password")
    first, second = tmp_path / "first", tmp_path / "second"
    provision_folder(inventory, first)
    old = (first / "cam-02/uncia/files/etc/uncia/mqtt-password").read_text().strip()
    result = provision_folder(inventory, second, reprovision=["cam-02"])
    assert result.revoked == ["cam-02"] and result.gateway_added
    new = (second / "cam-02/uncia/files/etc/uncia/mqtt-password").read_text().strip()
    assert new != old
    with generated_broker(second / "gw-01", tmp_path) as broker:
        site = Site(second, inventory, tmp_path, broker)
        assert Client(site, user="cam-02", password=old).connect().startswith("refused: Not authorized")
        unchanged = Site(first, inventory, tmp_path, broker).password("cam-01")
        for user, password in (("cam-02", new), ("cam-01", unchanged)):
            client = Client(site, user=user, password=password)
            assert client.connect() == "accepted", user
            client.close()


def test_revoked_certificate_is_refused(tmp_path: Path) -> None:
    inventory = write_inventory(tmp_path, auth="certificate")
    first, second = tmp_path / "first", tmp_path / "second"
    provision_folder(inventory, first)
    old_site_dir = first
    provision_folder(inventory, second, reprovision=["cam-02"])
    with generated_broker(second / "gw-01", tmp_path) as broker:
        old = Site(old_site_dir, inventory, tmp_path, broker, "certificate")
        new = Site(second, inventory, tmp_path, broker, "certificate")
        assert Client(old, cert=old.cert("cam-02")).connect() != "accepted"
        assert "certificate verify failed" in broker.log_text()  # the broker's CRL check, not the client
        for site, name in ((new, "cam-02"), (old, "cam-01")):
            client = Client(site, cert=site.cert(name))
            assert client.connect() == "accepted", name
            client.close()


# -- certificates -------------------------------------------------------------------------------------


def test_certificate_is_the_identity_whatever_user_name_is_sent(cert_site: Site, clients: Any) -> None:
    # cam-01's certificate with the gateway's user name in CONNECT: still cam-01 to the ACL.
    impostor = clients(cert_site, user="gw-01", password="x", cert=cert_site.cert("cam-01"))
    impostor.subscribe(f"uncia/{SITE}/#")
    gateway = clients(cert_site, "gw-01", local=True)
    gateway.subscribe(f"uncia/{SITE}/#")
    gateway.publish(f"uncia/{SITE}/gw-01/collar-7/event/fix", b"exact position")
    command = f"uncia/{SITE}/cam-01/unit/command/ping"
    gateway.publish(command, marker())
    assert [t for t, _ in impostor.wait_for(command)] == [command]
    forged = f"uncia/{SITE}/gw-01/gps0/event/fix"
    impostor.publish(forged, b"forged")
    own = f"uncia/{SITE}/cam-01/unit/state/health"
    impostor.publish(own, marker())
    assert forged not in [t for t, _ in gateway.wait_for(own)]


def test_a_client_without_a_site_certificate_is_refused(cert_site: Site, tmp_path: Path) -> None:
    assert Client(cert_site, user="cam-01", password="x").connect() != "accepted"
    stranger = SiteCA.create("elsewhere").issue_client("cam-01")
    (tmp_path / "s.crt").write_bytes(stranger.cert_pem)
    (tmp_path / "s.key").write_bytes(stranger.key_pem)
    assert Client(cert_site, cert=(str(tmp_path / "s.crt"), str(tmp_path / "s.key"))).connect() != "accepted"


def test_dashboard_certificate_reads_only_the_shared_feed(cert_site: Site, clients: Any) -> None:
    dashboard = clients(cert_site, "public-map")
    dashboard.subscribe(f"uncia/{SITE}/+/+/event/fix", f"uncia-shared/{SITE}/#")
    gateway = clients(cert_site, "gw-01", local=True)
    gateway.publish(f"uncia/{SITE}/gw-01/collar-7/event/fix", b"exact position")
    shared = f"uncia-shared/{SITE}/collar-7/fix"
    gateway.publish(shared, marker())
    assert [t for t, _ in dashboard.wait_for(shared)] == [shared]


# -- TLS versions -------------------------------------------------------------------------------------


def _handshake(site: Site, version: ssl.TLSVersion, cert: tuple[str, str] | None) -> str:
    """A TLS handshake pinned to `version`, with OpenSSL's security level 0 so the client itself does
    not refuse old versions: any refusal must come from the broker."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.load_verify_locations(site.ca)
    if cert:
        ctx.load_cert_chain(*cert)
    ctx.set_ciphers("DEFAULT:@SECLEVEL=0")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)  # TLSv1_1 is deprecated: that is the point
        ctx.minimum_version = ctx.maximum_version = version
    try:
        with (
            socket.create_connection(("127.0.0.1", site.broker.tls_port), timeout=5) as raw,
            ctx.wrap_socket(raw, server_hostname="127.0.0.1") as tls,
        ):
            return f"ok {tls.version()}"
    except ssl.SSLError as exc:
        return exc.reason or str(exc)


@pytest.mark.parametrize("site_fixture", ["password_site", "cert_site"])
def test_tls_below_1_2_is_refused_by_the_broker(site_fixture: str, request: pytest.FixtureRequest) -> None:
    site: Site = request.getfixturevalue(site_fixture)
    cert = site.cert("cam-01") if site_fixture == "cert_site" else None
    assert _handshake(site, ssl.TLSVersion.TLSv1_2, cert) == "ok TLSv1.2"
    # The client offered TLS 1.1 (no NO_PROTOCOLS_AVAILABLE on our side); the broker answered with a
    # protocol_version alert (alert 70).
    assert _handshake(site, ssl.TLSVersion.TLSv1_1, cert) == "TLSV1_ALERT_PROTOCOL_VERSION"
    assert _handshake(site, ssl.TLSVersion.TLSv1, cert) == "TLSV1_ALERT_PROTOCOL_VERSION"


@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl command")
def test_openssl_s_client_tls1_1_is_refused(password_site: Site) -> None:
    def s_client(flag: str) -> subprocess.CompletedProcess[str]:
        command = ["openssl", "s_client", "-connect", f"127.0.0.1:{password_site.broker.tls_port}", flag]
        command += ["-cipher", "DEFAULT@SECLEVEL=0", "-CAfile", password_site.ca]
        return subprocess.run(command, input="", capture_output=True, text=True, timeout=20)

    old = s_client("-tls1_1")
    if "no protocols available" in old.stderr:  # this OpenSSL build cannot even offer TLS 1.1
        pytest.skip("the local openssl cannot offer TLS 1.1 at all")
    assert old.returncode != 0 and "alert protocol version" in old.stderr
    assert s_client("-tls1_2").returncode == 0


def test_no_secret_reaches_the_broker_log(password_site: Site) -> None:
    # The log holds every connection made by the tests above in this module.
    log = password_site.broker.log_text()
    for name in ("gw-01", "cam-01", "cam-02", "dolma", "public-map"):
        assert password_site.password(name) not in log


def test_generated_config_with_a_bridge_is_accepted_by_mosquitto(tmp_path: Path) -> None:
    pytest.importorskip("gateway.bridge_config")
    (tmp_path / "central-ca.crt").write_bytes(SiteCA.create("central").cert_pem())
    text = INVENTORY.format(auth="certificate") + (
        '\n[bridge]\naddress = "central.example.org"\nca_file = "central-ca.crt"\n'
    )
    inventory = write_inventory(tmp_path, text=text)
    provision_folder(inventory, tmp_path / "out")
    with generated_broker(tmp_path / "out/gw-01", tmp_path, bridge_to=free_port()) as broker:
        assert "connection " in broker.config and "bridge_cafile" in broker.config
        client = Client(Site(tmp_path / "out", inventory, tmp_path, broker, "certificate"), cert=None)
        assert client.connect() != "accepted"  # running, and still refusing a client without a certificate
