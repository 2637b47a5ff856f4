"""A serving process imports only what it serves.

``personalize serve`` runs for real in a project folder whose own ``actions`` package
has one extra action that answers with the worker's ``sys.modules``; asked after the
warm-up and a personalized answer (ALS and content models loaded), the worker must hold
no scikit-learn, matplotlib, demo generator, import libraries or command line. The main
process is the command line itself, but the offline libraries stay out of it too.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from rasa_personalize.cli import app
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.testing import action_call, tracker_state, user_message

pytestmark = pytest.mark.server

# Offline work only: training, segment reports, the demo shop, file imports.
OFFLINE = (
    "sklearn",
    "matplotlib",
    "rasa_personalize.demo.generator",
    "rasa_personalize.imports",
    "rapidfuzz",
    "phonenumbers",
    "email_validator",
    # Rasa's event broker is read by `personalize broker`, never by a server.
    "aio_pika",
    "rasa_personalize.events.broker",
    # Experiment reports and simulations run offline; the server only assigns arms (and
    # loads the statistics only while an "allocation: thompson" experiment runs).
    "rasa_personalize.experiments.stats",
    "rasa_personalize.experiments.report",
    "rasa_personalize.experiments.report_html",
)
# A worker has no command line either.
WORKER_FORBIDDEN = (*OFFLINE, "rasa_personalize.cli", "typer")

LOADED_MODULES_ACTION = """
import json
import sys

from rasa_sdk import Action


class ActionLoadedModules(Action):
    def name(self):
        return "action_loaded_modules"

    async def run(self, dispatcher, tracker, domain):
        dispatcher.utter_message(text=json.dumps(sorted(sys.modules)))
        return []
"""

runner = CliRunner()


def loaded(modules: list[str], forbidden: tuple[str, ...]) -> list[str]:
    """The modules of ``forbidden`` packages among ``modules``."""
    return [m for m in modules if any(m == f or m.startswith(f"{f}.") for f in forbidden)]


def post(url: str, payload: dict[str, Any]) -> dict[str, Any]:
    request = urllib.request.Request(
        url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"}
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        document: dict[str, Any] = json.loads(answer.read())
        return document


def slots(answer: dict[str, Any]) -> dict[str, Any]:
    return {e["name"]: e["value"] for e in answer["events"] if e["event"] == "slot"}


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, dict[str, str]]:
    """A project folder with its actions package, a seeded store and trained models."""
    folder = tmp_path_factory.mktemp("served")
    (folder / "actions").mkdir()
    (folder / "actions" / "__init__.py").write_text(textwrap.dedent(LOADED_MODULES_ACTION))
    env = {
        "PERSONALIZE_DATABASE_URL": f"sqlite:///{folder / 'store.db'}",
        "PERSONALIZE_SECRET_KEY": "served-modules-secret-key",
        "PERSONALIZE_MODEL_DIR": str(folder / "models"),
        "PERSONALIZE_RULES_PATH": str(folder / "no-rules.yml"),
        "PERSONALIZE_TAGS_PATH": str(folder / "no-tags.yml"),
        # The first answer waits for the warm-up instead of answering defaults.
        "PERSONALIZE_ACTION_BUDGET_S": "60",
    }
    seed = ["seed-demo", "--customers", "60", "--products", "40", "--interactions", "1500"]
    for command in (["db", "upgrade"], seed, ["train", "--precompute"]):
        result = runner.invoke(app, command, env=env)
        assert result.exit_code == 0, result.output
    return folder, env


def personalize_script() -> str:
    script = Path(sys.executable).with_name("personalize")
    if not script.exists():
        pytest.skip("the personalize console script is not installed (pip install -e .)")
    return str(script)


@pytest.fixture(scope="module")
def served(project: tuple[Path, dict[str, str]]) -> Iterator[str]:
    """`personalize serve` (the console script, as users run it) in the project folder."""
    folder, env = project
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    command = [personalize_script(), "serve", "--host", "127.0.0.1", "--port", str(port)]
    with ServerProcess(
        command,
        f"{base}/health",
        env={**os.environ, **env},
        cwd=folder,
        log_path=folder / "server.log",
    ):
        yield base


def test_the_worker_loads_only_what_it_serves(served: str) -> None:
    """After ALS and content answers, the worker holds no offline library and no CLI."""
    known = post(
        f"{served}/webhook",
        action_call("action_recommend_products", tracker_state(user_id="demo-loyal")),
    )
    assert slots(known)["recommended_products"]
    assert slots(known)["recommendation_source"] == "als"
    asking = tracker_state(
        events=[
            user_message(
                "anything for running?",
                "ask_category",
                entities=[{"entity": "category", "value": "running"}],
                metadata={"user_id": "someone-new"},
            )
        ],
    )
    content = post(f"{served}/webhook", action_call("action_recommend_products", asking))
    assert slots(content)["recommendation_source"] == "content"

    answer = post(f"{served}/webhook", action_call("action_loaded_modules", tracker_state()))
    modules = json.loads(answer["responses"][0]["text"])
    assert "rasa_personalize.recommend.content_artifacts" in modules  # the content model
    assert "rasa_personalize.recommend.als" in modules
    assert loaded(modules, WORKER_FORBIDDEN) == []
    assert loaded(modules, ("redis",)) == []  # no PERSONALIZE_REDIS_URL, no redis at all


# The main process of `personalize serve`, up to the moment it would start serving.
MAIN_PROCESS = """
import json, sys
import rasa_personalize.server as server

def report(*, port, host, action_packages, workers, cors_origins):
    server.create_personalize_app(action_packages, cors_origins)  # what serve() builds first
    print(json.dumps(sorted(sys.modules)))

server.serve = report
sys.argv = ["personalize", "serve"]
from rasa_personalize.cli import main
main()
"""


def test_the_main_process_loads_no_offline_library(project: tuple[Path, dict[str, str]]) -> None:
    """The CLI's serve path builds the app without scikit-learn, matplotlib or importers."""
    folder, env = project
    result = subprocess.run(
        [sys.executable, "-c", MAIN_PROCESS],
        cwd=folder,
        env={**os.environ, **env},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    modules = json.loads(result.stdout.strip().splitlines()[-1])
    assert "rasa_personalize.server" in modules
    assert loaded(modules, (*OFFLINE, "redis")) == []
