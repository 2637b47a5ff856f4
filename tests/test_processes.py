"""ServerProcess: a child server in a process group of its own, waited for until healthy."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

from rasa_personalize.processes import ServerProcess, free_port


def test_the_pid_is_the_running_group_leader_and_unknown_before_the_start(
    tmp_path: Path,
) -> None:
    port = free_port()
    server = ServerProcess(
        [sys.executable, "-m", "http.server", str(port), "--bind", "127.0.0.1"],
        f"http://127.0.0.1:{port}/",
        cwd=tmp_path,
    )
    with pytest.raises(RuntimeError, match="never started"):
        _ = server.pid

    with server:
        pid = server.pid
        command = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
        assert b"http.server" in command
        assert os.getpgid(pid) == pid

    assert not server.running
