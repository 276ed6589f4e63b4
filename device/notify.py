"""A tiny sd_notify: datagrams to $NOTIFY_SOCKET, so systemd knows READY, WATCHDOG, STATUS, STOPPING.

No dependency: the protocol is one `KEY=value` line per datagram to a unix socket (an abstract one
when the path starts with '@'). Without NOTIFY_SOCKET (not under systemd) every call does nothing.
"""

from __future__ import annotations

import os
import socket


class Notifier:
    """Sends sd_notify messages; safe to call from any thread."""

    def __init__(self, address: str | None = None) -> None:
        address = os.environ.get("NOTIFY_SOCKET") if address is None else address
        self._address = ("\0" + address[1:]) if address and address.startswith("@") else address
        self._sock: socket.socket | None = None
        if self._address:
            self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)

    @property
    def enabled(self) -> bool:
        """Whether a NOTIFY_SOCKET was given."""
        return self._sock is not None

    def notify(self, message: str) -> bool:
        """Send `message` (e.g. "READY=1"); False when not under systemd or the send failed."""
        if self._sock is None:
            return False
        try:
            self._sock.sendto(message.encode(), self._address)
        except OSError:
            return False  # systemd gone or socket full: never worth crashing the daemon
        return True

    def ready(self, status: str) -> bool:
        """READY=1 with a STATUS line."""
        return self.notify(f"READY=1\nSTATUS={status}")

    def status(self, status: str) -> bool:
        """A STATUS= line for `systemctl status`."""
        return self.notify(f"STATUS={status}")

    def watchdog(self) -> bool:
        """WATCHDOG=1: the sampling loop is alive."""
        return self.notify("WATCHDOG=1")

    def stopping(self) -> bool:
        """STOPPING=1: a clean shutdown is under way."""
        return self.notify("STOPPING=1")

    def watchdog_interval_s(self) -> float | None:
        """Half of WatchdogSec (from WATCHDOG_USEC), the interval to ping at; None when unset."""
        usec = os.environ.get("WATCHDOG_USEC")
        pid = os.environ.get("WATCHDOG_PID")
        if not usec or (pid and pid != str(os.getpid())):
            return None
        return int(usec) / 2e6
