"""A small synchronous QMP client over a unix socket (standard library only).

QMP is newline-delimited JSON: a greeting, then one reply per command, with asynchronous
events interleaved.  Events are kept (with the host's receive time) for the caller to drain,
so a migration's ``MIGRATION_PASS`` events are never lost while waiting for a reply.
Every wait has a deadline: a QEMU that hangs becomes a :class:`QMPTimeoutError`, not a stuck run.
"""

from __future__ import annotations

import itertools
import json
import socket
import time
from collections import deque
from pathlib import Path
from typing import Any

__all__ = [
    "QMPClient",
    "QMPError",
    "QMPTimeoutError",
    "event_time",
    "flatten",
    "split_messages",
]


class QMPError(RuntimeError):
    """QEMU answered a command with an error (class and description in the message)."""

    def __init__(self, command: str, error: dict[str, Any]) -> None:
        self.command, self.error = command, error
        super().__init__(f"QMP {command}: {error.get('class')}: {error.get('desc')}")


class QMPTimeoutError(TimeoutError):
    """No (complete) answer from QEMU before the deadline."""


def split_messages(buffer: bytes) -> tuple[list[dict[str, Any]], bytes]:
    """Complete JSON lines in ``buffer`` -> (messages, the unfinished rest)."""
    *lines, rest = buffer.split(b"\n")
    messages = []
    for line in lines:
        line = line.strip()
        if line:
            messages.append(json.loads(line))
    return messages, rest


def event_time(message: dict[str, Any]) -> float:
    """An event's QEMU timestamp (host wall clock) in seconds since the epoch."""
    stamp = message["timestamp"]
    return float(stamp["seconds"]) + float(stamp["microseconds"]) / 1e6


def flatten(reply: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"ram": {"dirty-sync-count": 3}}`` -> ``{"ram_dirty_sync_count": 3}`` (lists as JSON)."""
    out: dict[str, Any] = {}
    for key, value in reply.items():
        name = f"{prefix}{key}".replace("-", "_").replace(".", "_")
        if isinstance(value, dict):
            out.update(flatten(value, name + "_"))
        elif isinstance(value, list):
            out[name] = json.dumps(value)
        else:
            out[name] = value
    return out


class QMPClient:
    """One QMP connection.  Use :meth:`connect`, then :meth:`execute`; drain :attr:`events`."""

    def __init__(self, path: str | Path, timeout: float = 10.0) -> None:
        self.path = str(path)
        self.timeout = timeout
        self.sock: socket.socket | None = None
        self.buffer = b""
        self.events: list[dict[str, Any]] = []
        self.pending: deque[dict[str, Any]] = deque()
        self.greeting: dict[str, Any] = {}
        self._ids = itertools.count(1)

    def connect(self, timeout: float | None = None) -> dict[str, Any]:
        """Connect (retrying while QEMU creates the socket), read the greeting, negotiate."""
        deadline = time.monotonic() + (timeout or self.timeout)
        last: Exception | None = None
        while time.monotonic() < deadline:
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            try:
                sock.connect(self.path)
            except OSError as exc:
                sock.close()
                last = exc
                time.sleep(0.05)
                continue
            self.sock = sock
            break
        if self.sock is None:
            raise QMPTimeoutError(f"cannot connect to QMP socket {self.path}: {last}")
        greeting = self._next(deadline)
        if "QMP" not in greeting:
            raise QMPError("greeting", {"class": "Protocol", "desc": f"unexpected {greeting}"})
        self.greeting = greeting
        self.execute("qmp_capabilities")
        return greeting

    def _read(self, deadline: float) -> None:
        assert self.sock is not None
        left = deadline - time.monotonic()
        if left <= 0:
            raise QMPTimeoutError(f"QMP {self.path}: no answer before the deadline")
        self.sock.settimeout(left)
        try:
            chunk = self.sock.recv(65536)
        except TimeoutError:
            raise QMPTimeoutError(f"QMP {self.path}: no answer before the deadline") from None
        if not chunk:
            raise ConnectionError(f"QMP {self.path}: QEMU closed the connection")
        self.buffer += chunk

    def _next(self, deadline: float) -> dict[str, Any]:
        """The next message, reading from the socket only when none is parsed yet."""
        while not self.pending:
            messages, self.buffer = split_messages(self.buffer)
            self.pending.extend(messages)
            if not self.pending:
                self._read(deadline)
        return self.pending.popleft()

    def execute(
        self, command: str, arguments: dict[str, Any] | None = None, timeout: float | None = None
    ) -> Any:
        """Send one command and return its ``return`` value; events seen meanwhile are kept."""
        if self.sock is None:
            raise ConnectionError("QMP client is not connected")
        ident = next(self._ids)
        message: dict[str, Any] = {"execute": command, "id": ident}
        if arguments:
            message["arguments"] = arguments
        self.sock.sendall(json.dumps(message).encode() + b"\n")
        deadline = time.monotonic() + (timeout or self.timeout)
        while True:
            reply = self._next(deadline)
            if "event" in reply:
                reply["received"] = time.time()
                self.events.append(reply)
            elif reply.get("id") == ident:
                if "error" in reply:
                    raise QMPError(command, reply["error"])
                return reply.get("return")

    def poll_events(self) -> list[dict[str, Any]]:
        """Read whatever events are already waiting (without blocking) and drain the list."""
        if self.sock is not None:
            self.sock.setblocking(False)
            try:
                while True:
                    chunk = self.sock.recv(65536)
                    if not chunk:
                        break
                    self.buffer += chunk
            except (BlockingIOError, InterruptedError):
                pass
            finally:
                self.sock.setblocking(True)
            messages, self.buffer = split_messages(self.buffer)
            self.pending.extend(messages)
            while self.pending:
                m = self.pending.popleft()
                if "event" in m:
                    m["received"] = time.time()
                    self.events.append(m)
        drained, self.events = self.events, []
        return drained

    def close(self) -> None:
        """Close the socket (QEMU keeps running; send ``quit`` first to stop it)."""
        if self.sock is not None:
            try:
                self.sock.close()
            finally:
                self.sock = None

    def __enter__(self) -> QMPClient:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()
