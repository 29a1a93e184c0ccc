"""The fork server that worker processes come from (see :mod:`rnncheck.workers`).

One clean Python process per run, started with torch and rnncheck imported and nothing run: it
forks a worker on request.  A worker so costs a fork, not an import of torch, and it never
inherits a thread pool that has already run (the child of a process whose OpenMP pool ran hangs in
its first parallel region), nor anything of the supervisor's own state.

The supervisor sends, over a ``SOCK_SEQPACKET`` socket, one end of a fresh pipe per worker; the
server forks, the child takes that pipe, and the server answers ``started <pid>``.  When a child
ends, the server answers ``exit <pid> <code>`` (a negative code: the signal that killed it), so
the supervisor learns how each worker died although it is not the worker's parent.

This module imports neither torch nor the checks: the command starts the server before it
imports them itself, so that both imports run at once.
"""

from __future__ import annotations

import os
import select
import signal
import socket
import subprocess
import sys
import time

#: the largest control message (a pid and an exit code fit with room to spare)
MESSAGE = 256


def available() -> bool:
    """Worker processes work here: the platform forks and passes file descriptors (Linux, macOS; not Windows)."""
    return hasattr(os, "fork") and hasattr(socket, "send_fds") and hasattr(socket, "SOCK_SEQPACKET")


class ServerError(RuntimeError):
    """The fork server could not be started, or stopped answering."""


def _pythonpath() -> str:
    """PYTHONPATH for the server: the folder this rnncheck was imported from first, so that it imports the same one."""
    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    rest = os.environ.get("PYTHONPATH", "")
    return here + (os.pathsep + rest if rest else "")


class Server:
    """The supervisor's handle on the fork server: ``fork(fd) -> pid``, and how each worker ended."""

    def __init__(self) -> None:
        mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
        self.proc = subprocess.Popen(
            [sys.executable, "-c", f"from rnncheck.zygote import serve; serve({theirs.fileno()})"],
            pass_fds=[theirs.fileno()],
            stdin=subprocess.DEVNULL,
            env={**os.environ, "PYTHONPATH": _pythonpath()},
        )
        theirs.close()
        self.sock = mine
        self.exits: dict[int, int] = {}
        self.owner = os.getpid()

    def alive(self) -> bool:
        return self.proc.poll() is None and os.getpid() == self.owner

    def fork(self, fd: int, timeout: float = 120.0) -> int:
        """A new worker holding ``fd`` (which this process may then close); its pid."""
        try:
            socket.send_fds(self.sock, [b"fork"], [fd])
        except OSError as exc:
            raise ServerError(f"rnncheck's fork server is gone ({exc})") from exc
        deadline = time.monotonic() + timeout
        while True:
            message = self._read(max(0.0, deadline - time.monotonic()))
            if message is None:
                raise ServerError(f"rnncheck's fork server did not answer within {timeout:g} s")
            if message[0] == "started":
                return message[1]

    def poll(self) -> None:
        """Take in every exit the server has reported so far."""
        while self._read(0.0) is not None:
            pass

    def exit_code(self, pid: int, wait: float = 2.0) -> int | None:
        """How worker ``pid`` ended (None: not known within ``wait`` seconds)."""
        deadline = time.monotonic() + wait
        while pid not in self.exits:
            left = deadline - time.monotonic()
            if left <= 0:
                break
            self._read(left)
        return self.exits.pop(pid, None)

    def _read(self, timeout: float):
        ready, _, _ = select.select([self.sock], [], [], timeout)
        if not ready:
            return None
        try:
            data = self.sock.recv(MESSAGE)
        except OSError:
            data = b""
        if not data:
            code = self.proc.poll()
            raise ServerError(f"rnncheck's fork server ended (exit status {code}); its error, if any, is above")
        words = data.decode().split()
        if words[0] == "exit":
            self.exits[int(words[1])] = int(words[2])
            return ("exit", int(words[1]), int(words[2]))
        return (words[0], int(words[1]))

    def fileno(self) -> int:
        return self.sock.fileno()

    def close(self) -> None:
        try:
            self.sock.close()
        finally:
            try:
                self.proc.wait(timeout=5)
            except subprocess.TimeoutExpired:
                self.proc.kill()


_SERVER: Server | None = None


def server() -> Server:
    """This process's fork server, started on first use and kept for the process's life."""
    global _SERVER
    if _SERVER is None or not _SERVER.alive():
        _SERVER = Server()
    return _SERVER


def serve(fd: int) -> None:
    """The fork server's loop: fork a worker per request, report each worker's end, stop when the supervisor goes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the supervisor's to handle
    sock = socket.socket(fileno=fd)
    from . import workers  # torch, rnncheck and the checks, imported once for every worker

    workers.warm_up()

    children: set[int] = set()
    wake_r, wake_w = os.pipe()  # a child's end wakes the loop at once (SIGCHLD), so its exit is told at once
    os.set_blocking(wake_w, False)
    signal.set_wakeup_fd(wake_w)
    signal.signal(signal.SIGCHLD, lambda signum, frame: None)
    while True:
        try:
            ready, _, _ = select.select([sock, wake_r], [], [], 1.0)
        except InterruptedError:
            ready = []
        if wake_r in ready:
            os.read(wake_r, 4096)
        while children:
            try:
                pid, status = os.waitpid(-1, os.WNOHANG)
            except ChildProcessError:
                break
            if pid == 0:
                break
            children.discard(pid)
            _send(sock, f"exit {pid} {os.waitstatus_to_exitcode(status)}")
        if sock not in ready:
            continue
        try:
            message, fds, _, _ = socket.recv_fds(sock, MESSAGE, 1)
        except OSError:
            message, fds = b"", []
        if not message:  # the supervisor has gone: so do we
            os._exit(0)
        pid = os.fork()
        if pid == 0:
            sock.close()
            os.close(wake_r)
            os.close(wake_w)
            signal.set_wakeup_fd(-1)
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            signal.signal(signal.SIGINT, signal.SIG_IGN)
            workers.child(fds[0])  # never returns
        os.close(fds[0])
        children.add(pid)
        _send(sock, f"started {pid}")


def _send(sock: socket.socket, text: str) -> None:
    try:
        sock.send(text.encode())
    except OSError:
        os._exit(0)
