"""sd_notify datagrams reach a temporary NOTIFY_SOCKET."""

from __future__ import annotations

import socket
import uuid

from device.notify import Notifier


def _listen(tmp_path):
    path = str(tmp_path / "notify.sock")
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind(path)
    server.settimeout(5)
    return path, server


def test_messages_arrive(tmp_path, monkeypatch):
    path, server = _listen(tmp_path)
    monkeypatch.setenv("NOTIFY_SOCKET", path)
    n = Notifier()
    assert n.enabled
    n.ready("recording")
    n.watchdog()
    n.stopping()
    assert server.recv(1024) == b"READY=1\nSTATUS=recording"
    assert server.recv(1024) == b"WATCHDOG=1"
    assert server.recv(1024) == b"STOPPING=1"


def test_abstract_socket(monkeypatch):
    name = f"rlsmon-test-notify-{uuid.uuid4().hex}"  # abstract names are machine-wide
    server = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    server.bind("\0" + name)
    server.settimeout(5)
    monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
    assert Notifier().status("hello")
    assert server.recv(1024) == b"STATUS=hello"


def test_without_systemd_nothing_happens(monkeypatch):
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert not Notifier().enabled
    assert Notifier().ready("x") is False


def test_watchdog_interval(monkeypatch):
    monkeypatch.setenv("WATCHDOG_USEC", "30000000")
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    assert Notifier("").watchdog_interval_s() == 15.0
    monkeypatch.setenv("WATCHDOG_PID", "1")
    assert Notifier("").watchdog_interval_s() is None
