"""sd_notify (downloader/sdnotify.py) against real AF_UNIX datagram sockets owned by the test."""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from downloader.service.sdnotify import Notifier, watchdog_loop

pytestmark = pytest.mark.skipif(not hasattr(socket, "AF_UNIX"), reason="needs AF_UNIX")
linux_only = pytest.mark.skipif(not sys.platform.startswith("linux"),
                                reason="abstract sockets are Linux-only")


@pytest.fixture
def receiver(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[socket.socket]:
    """A datagram socket at a filesystem path, announced in NOTIFY_SOCKET."""
    path = tmp_path / "notify.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    monkeypatch.setenv("NOTIFY_SOCKET", str(path))
    monkeypatch.delenv("WATCHDOG_USEC", raising=False)
    monkeypatch.delenv("WATCHDOG_PID", raising=False)
    yield sock
    sock.close()


def drain(sock: socket.socket) -> list[bytes]:
    """Every datagram already queued, without waiting for more."""
    got = []
    was_blocking = sock.getblocking()
    sock.setblocking(False)
    try:
        while True:
            got.append(sock.recv(4096))
    except BlockingIOError:
        pass
    finally:
        sock.setblocking(was_blocking)
    return got


def test_ready_without_status(receiver: socket.socket) -> None:
    assert Notifier().ready() is True
    assert drain(receiver) == [b"READY=1"]


def test_ready_with_status(receiver: socket.socket) -> None:
    assert Notifier().ready("watching 2 projects") is True
    assert drain(receiver) == [b"READY=1\nSTATUS=watching 2 projects"]


@pytest.mark.parametrize(
    ("call", "datagram"),
    [
        (Notifier.watchdog, b"WATCHDOG=1"),
        (Notifier.stopping, b"STOPPING=1"),
        (lambda n: n.status("3 partitions running"), b"STATUS=3 partitions running"),
        # A newline in a status would smuggle in another assignment.
        (lambda n: n.status("two\nlines"), b"STATUS=two lines"),
        (lambda n: n.send("STATUS=custom", "ERRNO=0"), b"STATUS=custom\nERRNO=0"),
    ],
)
def test_single_datagrams(receiver: socket.socket, call: Callable[[Notifier], bool],
                          datagram: bytes) -> None:
    assert call(Notifier()) is True
    assert drain(receiver) == [datagram]


def test_reloading_carries_monotonic_usec(receiver: socket.socket) -> None:
    before = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    assert Notifier().reloading() is True
    after = time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000
    [datagram] = drain(receiver)
    first, second = datagram.split(b"\n")
    assert first == b"RELOADING=1"
    key, _, value = second.partition(b"=")
    assert key == b"MONOTONIC_USEC"
    assert before <= int(value) <= after


def test_one_datagram_per_call_in_order(receiver: socket.socket) -> None:
    notifier = Notifier()
    notifier.ready()
    notifier.watchdog()
    notifier.stopping()
    assert drain(receiver) == [b"READY=1", b"WATCHDOG=1", b"STOPPING=1"]


@linux_only
def test_abstract_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"gio-downloader-test-{uuid.uuid4().hex}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(b"\0" + name.encode())
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        notifier = Notifier()
        assert notifier.enabled
        assert notifier.ready("up") is True
        assert drain(sock) == [b"READY=1\nSTATUS=up"]


def test_explicit_environment_mapping(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(str(path))
        assert Notifier({"NOTIFY_SOCKET": str(path)}).stopping() is True
        assert drain(sock) == [b"STOPPING=1"]


def test_unset_notify_socket_is_a_no_op(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    notifier = Notifier()
    assert not notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False
    assert notifier.stopping() is False
    assert notifier.status("x") is False
    assert notifier.reloading() is False


@pytest.mark.parametrize("value", ["", "relative/notify.sock", "@", "vsock:2:1234"])
def test_unsupported_addresses_are_a_no_op(value: str) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": value})
    assert not notifier.enabled
    assert notifier.ready() is False


def test_missing_socket_path_returns_false(tmp_path: Path) -> None:
    notifier = Notifier({"NOTIFY_SOCKET": str(tmp_path / "gone" / "notify.sock")})
    assert notifier.enabled
    assert notifier.ready("x") is False
    assert notifier.watchdog() is False
    assert notifier.reloading() is False


def test_socket_closed_by_the_manager_returns_false(tmp_path: Path) -> None:
    path = tmp_path / "n.sock"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind(str(path))
    notifier = Notifier({"NOTIFY_SOCKET": str(path)})
    assert notifier.watchdog() is True
    sock.close()  # the path stays, nobody listens: ECONNREFUSED
    assert notifier.watchdog() is False


def test_path_that_is_not_a_socket_returns_false(tmp_path: Path) -> None:
    path = tmp_path / "plain-file"
    path.write_text("")
    assert Notifier({"NOTIFY_SOCKET": str(path)}).ready() is False


PID = os.getpid()


@pytest.mark.parametrize(
    ("usec", "pid", "interval"),
    [
        ("60000000", None, 30.0),  # WatchdogSec=60: ping every 30 s
        ("60000000", str(PID), 30.0),
        ("40000", None, 0.02),
        ("1", None, 0.0000005),
        (None, None, None),
        ("", None, None),
        ("0", None, None),
        ("-5", None, None),
        ("sixty", None, None),
        ("1.5", None, None),
        ("60000000", str(PID + 1), None),  # meant for another process
        ("60000000", "0", None),
        ("60000000", "not-a-pid", None),
        (None, str(PID), None),
    ],
)
def test_watchdog_interval(monkeypatch: pytest.MonkeyPatch, usec: str | None, pid: str | None,
                           interval: float | None) -> None:
    for name, value in (("WATCHDOG_USEC", usec), ("WATCHDOG_PID", pid)):
        if value is None:
            monkeypatch.delenv(name, raising=False)
        else:
            monkeypatch.setenv(name, value)
    assert Notifier().watchdog_interval() == (None if interval is None
                                              else pytest.approx(interval))


async def test_watchdog_loop_returns_without_a_watchdog(receiver: socket.socket) -> None:
    await watchdog_loop(Notifier(), lambda: True)  # WATCHDOG_USEC unset: nothing to do
    assert drain(receiver) == []


async def test_watchdog_loop_returns_without_a_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    await watchdog_loop(Notifier(), lambda: True)


class Health:
    """is_healthy() for the loop: counts its answers, so the test follows the loop's iterations
    instead of the clock."""

    def __init__(self) -> None:
        self.healthy = True
        self.true_answers = 0
        self.false_answers = 0
        self.answered_false = asyncio.Event()

    def __call__(self) -> bool:
        if self.healthy:
            self.true_answers += 1
        else:
            self.false_answers += 1
            if self.false_answers >= 3:
                self.answered_false.set()
        return self.healthy


async def test_watchdog_loop_stops_pinging_when_unhealthy(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")  # a ping every 20 ms
    loop = asyncio.get_running_loop()
    receiver.setblocking(False)
    health = Health()
    task = asyncio.create_task(watchdog_loop(Notifier(), health))
    try:
        # At least one ping while healthy.
        assert await loop.sock_recv(receiver, 4096) == b"WATCHDOG=1"
        health.healthy = False
        # Three unhealthy answers = at least two whole intervals since health went away.
        await health.answered_false.wait()
        pings = 1 + len(drain(receiver))
        # Exactly one ping per healthy answer, none for the unhealthy ones.
        assert pings == health.true_answers
        health.answered_false.clear()
        health.false_answers = 0
        await health.answered_false.wait()
        assert drain(receiver) == []  # still none, several intervals later
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task


async def test_watchdog_loop_resumes_and_survives_a_failing_check(
    receiver: socket.socket, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("WATCHDOG_USEC", "40000")
    loop = asyncio.get_running_loop()
    receiver.setblocking(False)
    answers = iter([False, False])
    calls = 0

    def is_healthy() -> bool:
        nonlocal calls
        calls += 1
        if calls == 1:
            raise RuntimeError("health check broke")  # counts as unhealthy, loop goes on
        return next(answers, True)

    task = asyncio.create_task(watchdog_loop(Notifier(), is_healthy))
    try:
        assert await loop.sock_recv(receiver, 4096) == b"WATCHDOG=1"
        assert calls >= 4  # the first ping came only once health came back
    finally:
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task
