"""systemd's sd_notify protocol (sd_notify(3)) in plain Python, no libsystemd needed.

The service manager passes a datagram socket in ``NOTIFY_SOCKET`` (a filesystem path, or an
abstract socket written ``@name``) and, with ``WatchdogSec=``, the watchdog timeout in
``WATCHDOG_USEC`` (and the pid it is meant for in ``WATCHDOG_PID``). We send newline-separated
``KEY=value`` assignments, one datagram per state change.

Outside systemd (a terminal, a container, the tests) ``NOTIFY_SOCKET`` is unset and every method
is a no-op. Sending never raises: a notification that cannot be delivered must not take the
daemon down, so failures only show as a ``False`` return.
"""

from __future__ import annotations

import asyncio
import os
import socket
import time
from collections.abc import Callable, Mapping


class Notifier:
    """Talks to the service manager named by the environment (``os.environ`` unless given)."""

    def __init__(self, environ: Mapping[str, str] | None = None) -> None:
        env = os.environ if environ is None else environ
        self.address: bytes | None = _socket_address(env.get("NOTIFY_SOCKET", ""))
        self._watchdog_usec = env.get("WATCHDOG_USEC")
        self._watchdog_pid = env.get("WATCHDOG_PID")

    @property
    def enabled(self) -> bool:
        """True when there is a service manager to talk to."""
        return self.address is not None

    def send(self, *assignments: str) -> bool:
        """Sends ``KEY=value`` lines as one datagram; True when the manager got it."""
        if self.address is None or not assignments:
            return False
        try:
            with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
                # A full receive queue must not stall the event loop: drop the message instead.
                sock.setblocking(False)
                sock.sendto("\n".join(assignments).encode(), self.address)
        except (OSError, ValueError):
            return False
        return True

    def ready(self, status: str | None = None) -> bool:
        """Start-up (or a reload) is complete: ``Type=notify`` units leave "activating" here."""
        if status is None:
            return self.send("READY=1")
        return self.send("READY=1", _status(status))

    def watchdog(self) -> bool:
        """Keep-alive ping for ``WatchdogSec=``."""
        return self.send("WATCHDOG=1")

    def stopping(self) -> bool:
        """Shutdown has begun (in-flight work is being finished)."""
        return self.send("STOPPING=1")

    def status(self, text: str) -> bool:
        """Free-form one-line status, shown by ``systemctl status``."""
        return self.send(_status(text))

    def reloading(self) -> bool:
        """A configuration reload has begun; send ``ready()`` again once it is done.

        systemd >= 253 (``Type=notify-reload``) requires ``MONOTONIC_USEC`` next to
        ``RELOADING=1`` to tell this reload apart from an older one; older versions ignore it.
        """
        usec = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
        return self.send("RELOADING=1", f"MONOTONIC_USEC={usec}")

    def watchdog_interval(self) -> float | None:
        """Seconds between watchdog pings (half the timeout, as sd_watchdog_enabled(3) advises).

        None when no watchdog is configured for this process: ``WATCHDOG_USEC`` unset or not a
        positive integer, or ``WATCHDOG_PID`` set to another process (a parent's watchdog
        variables leaked into a child).
        """
        try:
            usec = int(self._watchdog_usec or "")
            if self._watchdog_pid and int(self._watchdog_pid) != os.getpid():
                return None
        except ValueError:
            return None
        if usec <= 0:
            return None
        return usec / 2 / 1_000_000


async def watchdog_loop(notifier: Notifier, is_healthy: Callable[[], bool]) -> None:
    """Pings the watchdog every ``watchdog_interval()`` seconds while ``is_healthy()`` is True.

    While it is False (or raises) no ping is sent, so a wedged daemon is killed and restarted by
    systemd once ``WatchdogSec=`` runs out; pinging resumes if health comes back sooner. Returns
    at once when there is no watchdog; otherwise runs until cancelled.
    """
    interval = notifier.watchdog_interval()
    if interval is None or not notifier.enabled:
        return
    while True:
        if _healthy(is_healthy):
            notifier.watchdog()
        await asyncio.sleep(interval)


def _healthy(is_healthy: Callable[[], bool]) -> bool:
    try:
        return bool(is_healthy())
    except Exception:
        # A health check that fails is no proof of health: let the watchdog decide.
        return False


def _socket_address(value: str) -> bytes | None:
    """``NOTIFY_SOCKET`` as a ``sendto`` address; None when unset or of an unsupported kind."""
    if value.startswith("/"):
        return os.fsencode(value)
    if value.startswith("@") and len(value) > 1:
        return b"\0" + os.fsencode(value[1:])  # Linux abstract namespace
    # Unset, relative paths (rejected by libsystemd too) and vsock: addresses.
    return None


def _status(text: str) -> str:
    # One assignment per line: a newline inside the text would start a bogus assignment.
    return "STATUS=" + " ".join(text.splitlines())
