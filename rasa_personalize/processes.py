"""Run a server as a child process group: start, wait until healthy, stop it whole.

Sanic (and Rasa) fork worker processes; stopping only the parent can orphan a worker that
keeps the port. So the child gets its own process group and the whole group is stopped.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import IO

from rasa_personalize.errors import PersonalizeError


def free_port() -> int:
    """A TCP port on the loopback interface that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class ServerProcess:
    """A server started as its own process group, stopped with everything it forked."""

    def __init__(
        self,
        command: Sequence[str],
        health_url: str,
        *,
        env: Mapping[str, str] | None = None,
        log_path: Path | None = None,
        cwd: Path | None = None,
    ) -> None:
        self.command = list(command)
        self.health_url = health_url
        self.env = dict(env) if env is not None else dict(os.environ)
        self.log_path = log_path
        self.cwd = cwd
        self._process: subprocess.Popen[bytes] | None = None
        self._log: IO[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> ServerProcess:
        """Start the command and block until ``health_url`` answers (or fail clearly)."""
        self._log = open(self.log_path, "ab") if self.log_path else None  # noqa: SIM115  # closed in stop()
        self._process = subprocess.Popen(  # noqa: S603  # commands are built by our own code
            self.command,
            env=self.env,
            cwd=self.cwd,
            stdout=self._log or subprocess.DEVNULL,
            stderr=subprocess.STDOUT if self.log_path else subprocess.DEVNULL,
            start_new_session=True,
        )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                where = f" (log: {self.log_path})" if self.log_path else ""
                raise PersonalizeError(f"{self.command[0]} exited during start-up{where}")
            try:
                with urllib.request.urlopen(self.health_url, timeout=1):  # noqa: S310  # our loopback URL
                    return self
            except (urllib.error.URLError, ConnectionError, TimeoutError):
                time.sleep(0.2)
        self.stop()
        raise PersonalizeError(f"no answer from {self.health_url} within {timeout_s:.0f} s")

    def stop(self, grace_s: float = 10.0) -> None:
        """SIGTERM the process group, then SIGKILL what is left after ``grace_s``."""
        process, self._process = self._process, None
        if self._log is not None:
            self._log.close()
            self._log = None
        if process is None:
            return
        for sig, wait_s in ((signal.SIGTERM, grace_s), (signal.SIGKILL, 5.0)):
            try:
                os.killpg(process.pid, sig)
            except ProcessLookupError:
                break
            try:
                process.wait(timeout=wait_s)
                # The leader is gone; give its workers a moment, then make sure.
                time.sleep(0.2)
                os.killpg(process.pid, signal.SIGKILL)
            except ProcessLookupError:
                break
            except subprocess.TimeoutExpired:
                continue
            break

    @property
    def pid(self) -> int:
        """The group leader's process id (its children are in the same group).

        Raises:
            RuntimeError: the server was never started.
        """
        if self._process is None:
            raise RuntimeError("the server was never started")
        return self._process.pid

    @property
    def running(self) -> bool:
        """Whether the group leader still runs."""
        return self._process is not None and self._process.poll() is None

    def __enter__(self) -> ServerProcess:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
