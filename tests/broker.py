"""A real mosquitto on a loopback port, for tests and benchmarks.

It runs the production config and ACL from firmware_config/, with only its paths and port changed
(the demo does the same): TLS only, no anonymous clients, a password per device, client ids bound to
usernames, and an ACL that lets each device write only under `rlsmon/v1/<its user>/` and read only its
receipts. Certificates come from trustme, passwords from `mosquitto_passwd`.

The one addition is a test-only read-only user, `observer`, for tests to watch the topics: since a
client id is its username, a watcher logged in as the collector would disconnect the real collector.
"""

from __future__ import annotations

import getpass
import queue
import secrets
import shutil
import signal
import socket
import ssl
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

import trustme

from device.demo import accepts_tls, broker_config, mosquitto_binary

REPO = Path(__file__).resolve().parents[1]
COLLECTOR_USER = "collector"  # as in firmware_config/mosquitto.acl
OBSERVER_USER = "observer"  # test-only: reads rlsmon/v1/#, writes nothing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _wait_until(predicate, timeout_s: float, what: str) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise TimeoutError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class Broker:
    """One mosquitto process and its files under `workdir`. Call `start()` before use."""

    workdir: Path
    ca: trustme.CA
    host: str = "127.0.0.1"
    port: int = field(default_factory=free_port)
    collector_user: str = COLLECTOR_USER
    collector_password: str = field(default_factory=lambda: secrets.token_urlsafe(16))
    passwords: dict[str, str] = field(default_factory=dict)
    process: subprocess.Popen | None = None

    def __post_init__(self) -> None:
        self.workdir.mkdir(parents=True, exist_ok=True)
        tls_dir = self.workdir / "tls"
        tls_dir.mkdir(exist_ok=True)
        self.ca_file = tls_dir / "ca.crt"
        self.ca.cert_pem.write_to_path(str(self.ca_file))
        cert = self.ca.issue_cert("localhost", "127.0.0.1")
        cert.cert_chain_pems[0].write_to_path(str(tls_dir / "server.crt"))
        cert.private_key_pem.write_to_path(str(tls_dir / "server.key"))
        self.password_file = self.workdir / "passwd"
        self.password_file.touch(mode=0o600)
        self.acl_file = self.workdir / "acl"
        shutil.copy(REPO / "firmware_config" / "mosquitto.acl", self.acl_file)
        with self.acl_file.open("a") as acl:
            acl.write(f"\nuser {OBSERVER_USER}\ntopic read rlsmon/v1/#\n")
        self.log_file = self.workdir / "mosquitto.log"
        self._set_password(self.collector_user, self.collector_password)
        self._set_password(OBSERVER_USER, secrets.token_urlsafe(16))
        (self.workdir / "mosquitto.conf").write_text(broker_config(
            (REPO / "firmware_config" / "mosquitto.conf").read_text(), port=self.port, tls_dir=tls_dir,
            mosquitto_dir=self.workdir, user=getpass.getuser()))

    def _set_password(self, user: str, password: str) -> None:
        subprocess.run(
            ["mosquitto_passwd", "-b", str(self.password_file), user, password],
            check=True,
            capture_output=True,
        )
        self.passwords[user] = password

    def start(self) -> None:
        """Start mosquitto and return once it accepts TLS connections."""
        self.process = subprocess.Popen(
            [mosquitto_binary(), "-c", str(self.workdir / "mosquitto.conf")],
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        _wait_until(self._accepts_tls, 10, f"mosquitto on port {self.port}")

    def _accepts_tls(self) -> bool:
        if self.process is not None and self.process.poll() is not None:
            raise RuntimeError(f"mosquitto exited with {self.process.returncode}; see {self.log_file}")
        return accepts_tls(self.host, self.port, self.ca_file)

    def stop(self) -> None:
        """Stop mosquitto cleanly (SIGTERM): it saves its persistent sessions first."""
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def kill(self) -> None:
        """Kill mosquitto with SIGKILL, as a power cut would."""
        if self.process is not None and self.process.poll() is None:
            self.process.kill()
            self.process.wait(timeout=10)
        self.process = None

    def add_device(self, device_id: str, password: str | None = None) -> str:
        """Give `device_id` a password (returned) and return once the running broker accepts it."""
        password = password or secrets.token_urlsafe(16)
        self._set_password(device_id, password)
        if self.process is not None:
            self.process.send_signal(signal.SIGHUP)  # mosquitto reloads passwords and ACL on SIGHUP
            _wait_until(lambda: self._credentials_accepted(device_id, password), 10, f"{device_id} to be accepted")
        return password

    def add_collector(self, user: str) -> str:
        """Give another collector `user` a password (returned) and its ACL block, as
        firmware_config/mosquitto.acl says to, and return once the running broker accepts it."""
        from server.provision import collector_acl

        with self.acl_file.open("a") as acl:
            acl.write("\n" + collector_acl(user))
        return self.add_device(user)

    def tls_context(self) -> ssl.SSLContext:
        """A client TLS context that trusts this broker's CA."""
        return ssl.create_default_context(cafile=str(self.ca_file))

    def client(self, username: str, password: str, client_id: str = "", **kwargs):
        """A paho v2-callback MQTT v5 client with TLS and credentials set, not yet connected."""
        import paho.mqtt.client as mqtt

        c = mqtt.Client(
            mqtt.CallbackAPIVersion.VERSION2, client_id=client_id, protocol=mqtt.MQTTv5, **kwargs
        )
        c.tls_set_context(self.tls_context())
        c.username_pw_set(username, password)
        return c

    def _credentials_accepted(self, username: str, password: str) -> bool:
        result: queue.Queue = queue.Queue()
        c = self.client(username, password)
        c.on_connect = lambda client, userdata, flags, reason_code, props: result.put(reason_code)
        try:
            c.connect(self.host, self.port)
        except OSError:
            return False
        c.loop_start()
        try:
            return not result.get(timeout=5).is_failure
        except queue.Empty:
            return False
        finally:
            c.disconnect()
            c.loop_stop()

    def subscribe(self, topic: str, username: str = OBSERVER_USER, password: str | None = None) -> "Subscription":
        """Subscribe (as the read-only observer by default) and collect messages; returns once
        subscribed. One connection per username at a time: a second one takes over the first."""
        return Subscription(self, topic, username, password or self.passwords[username])


class Subscription:
    """A QoS 1 subscriber whose messages land in `messages`, a queue of (topic, payload bytes, retain)."""

    def __init__(self, broker: Broker, topic: str, username: str, password: str) -> None:
        self.messages: queue.Queue = queue.Queue()
        subscribed = threading.Event()
        self._client = broker.client(username, password)
        self._client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic, qos=1)
        self._client.on_subscribe = lambda c, u, mid, rcs, p: subscribed.set()
        self._client.on_message = lambda c, u, m: self.messages.put((m.topic, m.payload, m.retain))
        self._client.connect(broker.host, broker.port)
        self._client.loop_start()
        if not subscribed.wait(10):
            self.close()
            raise TimeoutError(f"could not subscribe to {topic}")

    def get(self, timeout_s: float = 10):
        """The next (topic, payload, retain), waiting at most `timeout_s`."""
        return self.messages.get(timeout=timeout_s)

    def close(self) -> None:
        self._client.disconnect()
        self._client.loop_stop()
