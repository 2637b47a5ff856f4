"""The demo assistant running for real: our action server plus ``rasa run`` from .venv-rasa.

Rasa 3.6 lives in its own Python 3.10 environment and talks to the action server over
HTTP only, as in production. This module starts both on loopback ports, talks to Rasa
through its REST channel with ``metadata.user_id`` and its ``user_hash`` (as a web shop's
chat widget would for a logged-in customer), and reads slots back from Rasa's tracker
API. ``personalize demo``, ``personalize chat`` and the end-to-end tests use it.
"""

from __future__ import annotations

import json
import os
import secrets
import sys
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from types import TracebackType
from typing import Any

from rasa_personalize.errors import PersonalizeError
from rasa_personalize.identity import sign_user_id
from rasa_personalize.processes import ServerProcess, free_port

RASA_VENV = ".venv-rasa"
DEFAULT_MODEL = Path("models/rasa/demo.tar.gz")


@dataclass(frozen=True)
class RasaSetup:
    """Where Rasa and the trained demo model are, relative to the project folder."""

    project_dir: Path
    rasa_executable: Path
    model: Path

    @classmethod
    def find(cls, project_dir: Path, model: Path = DEFAULT_MODEL) -> RasaSetup | None:
        """The setup if both the Rasa environment and a trained model exist, else None."""
        project_dir = project_dir.resolve()
        rasa = project_dir / RASA_VENV / "bin" / "rasa"
        model_path = model if model.is_absolute() else project_dir / model
        if rasa.exists() and model_path.exists():
            return cls(project_dir, rasa, model_path)
        return None

    def missing(self) -> str:
        """What to run to get a setup (for error messages)."""
        return "run `make rasa-train` (creates .venv-rasa with Rasa 3.6.21 and trains the demo)"


def _http(method: str, url: str, payload: Any = None, timeout_s: float = 60.0) -> Any:
    data = json.dumps(payload).encode() if payload is not None else None
    request = urllib.request.Request(  # noqa: S310  # loopback URLs we built
        url, data=data, method=method, headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=timeout_s) as answer:  # noqa: S310
        return json.loads(answer.read() or b"null")


class RunningAssistant:
    """Our action server and Rasa, started together and stopped together."""

    def __init__(
        self,
        setup: RasaSetup,
        *,
        database_url: str,
        log_dir: Path,
        extra_env: dict[str, str] | None = None,
        cors_origins: Sequence[str] = (),
    ) -> None:
        """``cors_origins``: web pages whose chat widget may call Rasa from the browser
        (the shop's page of ``personalize demo-web``); none by default."""
        self.setup = setup
        self.database_url = database_url
        self.log_dir = log_dir
        self.action_port = free_port()
        self.rasa_port = free_port()
        self.rasa_url = f"http://127.0.0.1:{self.rasa_port}"
        env = {**os.environ, **(extra_env or {}), "PERSONALIZE_DATABASE_URL": database_url}
        # The demo store is keyed with the development secret unless one is set: its own
        # server may use it (demo only; `personalize serve` refuses it otherwise).
        env.setdefault("PERSONALIZE_ALLOW_DEV_SECRET", "true")
        # The demo signs its customers as a shop's server would: with the secret its
        # action server verifies (the configured one, else a fresh one for this run).
        self.identity_secret = env.get("PERSONALIZE_IDENTITY_SECRET") or secrets.token_hex(16)
        env["PERSONALIZE_IDENTITY_SECRET"] = self.identity_secret
        # Rasa proves itself to the action server with the webhook token, as in production:
        # the configured one, else a fresh one for this run. Rasa reads it from its
        # environment (``${PERSONALIZE_WEBHOOK_TOKEN}`` in the endpoints file), so the
        # token is never written to disk.
        self.webhook_token = env.get("PERSONALIZE_WEBHOOK_TOKEN") or secrets.token_urlsafe(24)
        env["PERSONALIZE_WEBHOOK_TOKEN"] = self.webhook_token
        self.action_server = ServerProcess(
            [
                sys.executable,
                "-m",
                "rasa_personalize.cli",
                "serve",
                "--host",
                "127.0.0.1",
                "--port",
                str(self.action_port),
            ],
            f"http://127.0.0.1:{self.action_port}/health",
            env=env,
            log_path=log_dir / "action-server.log",
            cwd=setup.project_dir,
        )
        endpoints = log_dir / "endpoints.yml"
        self._endpoints = endpoints
        rasa_env = {
            **os.environ,
            "RASA_TELEMETRY_ENABLED": "false",
            "TF_CPP_MIN_LOG_LEVEL": "3",
            "PYTHONWARNINGS": "ignore",
            "PERSONALIZE_WEBHOOK_TOKEN": self.webhook_token,
        }
        self.rasa = ServerProcess(
            [
                str(setup.rasa_executable),
                "run",
                "--enable-api",
                "--model",
                str(setup.model),
                "--endpoints",
                str(endpoints),
                "--credentials",
                str(setup.project_dir / "credentials.yml"),
                "--interface",
                "127.0.0.1",
                "--port",
                str(self.rasa_port),
                # Last: `--cors` takes every argument after it.
                *(["--cors", *cors_origins] if cors_origins else []),
            ],
            f"{self.rasa_url}/status",
            env=rasa_env,
            log_path=log_dir / "rasa.log",
            cwd=setup.project_dir,
        )

    def start(self) -> RunningAssistant:
        """Start the action server, then Rasa (which takes a while to load its model)."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        self._endpoints.write_text(
            "action_endpoint:\n"
            f'  url: "http://127.0.0.1:{self.action_port}/webhook"\n'
            "  token: ${PERSONALIZE_WEBHOOK_TOKEN}\n",
            encoding="utf-8",
        )
        self.action_server.start(timeout_s=60)
        try:
            self.rasa.start(timeout_s=300)
        except PersonalizeError:
            self.action_server.stop()
            raise
        return self

    def say(
        self,
        sender: str,
        text: str,
        user_id: str | None = None,
        *,
        signed: bool = True,
        metadata: dict[str, Any] | None = None,
    ) -> list[str]:
        """Send one customer message through the REST channel; the bot's texts in order.

        ``user_id`` goes with its ``user_hash`` unless ``signed`` is False (a visitor's
        unproven claim); ``metadata`` is added on top (a forged hash, for example).
        """
        payload: dict[str, Any] = {"sender": sender, "message": text}
        if user_id is not None:
            payload["metadata"] = {"user_id": user_id}
            if signed:
                payload["metadata"]["user_hash"] = sign_user_id(self.identity_secret, user_id)
        if metadata:
            payload["metadata"] = {**payload.get("metadata", {}), **metadata}
        try:
            answers = _http("POST", f"{self.rasa_url}/webhooks/rest/webhook", payload)
        except (urllib.error.URLError, TimeoutError) as error:
            raise PersonalizeError(f"Rasa did not answer: {error}") from None
        return [str(a["text"]) for a in answers or [] if a.get("text")]

    def slots(self, sender: str) -> dict[str, Any]:
        """The conversation's current slots, from Rasa's tracker API."""
        quoted = urllib.parse.quote(sender, safe="")
        tracker = _http("GET", f"{self.rasa_url}/conversations/{quoted}/tracker")
        slots: dict[str, Any] = tracker.get("slots", {})
        return slots

    def stop_action_server(self) -> None:
        """Stop only the action server (to see Rasa carry on without it)."""
        self.action_server.stop()

    def stop(self) -> None:
        """Stop both servers."""
        self.rasa.stop()
        self.action_server.stop()

    def __enter__(self) -> RunningAssistant:
        return self.start()

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        traceback: TracebackType | None,
    ) -> None:
        self.stop()
