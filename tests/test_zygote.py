"""The fork server: started with this rnncheck first on its path, and its death said in words
(internal structure under test; the workers it forks are tested in test_workers.py and e2e)."""

from __future__ import annotations

import os
import socket
from pathlib import Path

import pytest

import rnncheck
from rnncheck import zygote  # the module under test


def test_the_server_imports_this_rnncheck_first(monkeypatch):
    monkeypatch.setenv("PYTHONPATH", "/elsewhere")
    path = zygote._pythonpath().split(os.pathsep)
    assert path == [str(Path(rnncheck.__file__).resolve().parent.parent), "/elsewhere"]


@pytest.mark.skipif(not zygote.available(), reason="no fork server on this platform")
def test_a_server_that_died_is_said_in_words_not_waited_for():
    server = zygote.Server()
    server.proc.kill()
    server.proc.wait()
    mine, _theirs = socket.socketpair()
    with pytest.raises(zygote.ServerError, match="fork server"):
        server.fork(mine.fileno(), timeout=5)
    server.close()
