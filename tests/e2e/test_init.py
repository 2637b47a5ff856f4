"""`personalize init` on the project `rasa init` makes: Rasa validates, trains and talks.

The project is Rasa's own starter, copied from the Rasa environment's scaffold (the files
`rasa init --no-prompt` copies; the command would also train a model of the project as it
was, which nobody here needs). Then, as real processes: `personalize init`, `rasa data
validate`, `rasa train`, and a conversation through Rasa's REST channel with our action
server over a seeded demo store, signed like a logged-in customer's chat widget.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
import urllib.parse
import urllib.request
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from rasa_personalize.demo.assistant import RASA_VENV, RasaSetup, RunningAssistant
from rasa_personalize.slots import SLOT_CONTRACT
from tests.e2e.test_conversations import PROJECT, SECRET, _seed

# Rasa loads, trains three small models and starts: minutes on a busy 2-core machine.
pytestmark = [pytest.mark.e2e, pytest.mark.timeout(900)]

RASA_ENV = {"RASA_TELEMETRY_ENABLED": "false", "TF_CPP_MIN_LOG_LEVEL": "3"}


@dataclass(frozen=True)
class InitProject:
    """A `rasa init` project after `personalize init`, with what each step answered."""

    folder: Path
    rasa: Path
    model: Path
    init_output: str
    init_s: float
    train_s: float


def rasa_scaffold(rasa: Path) -> Path | None:
    """The starter project `rasa init` copies, inside the Rasa environment."""
    found = sorted(rasa.parent.parent.glob("lib/python3*/site-packages/rasa/cli/initial_project"))
    return found[0] if found else None


def run(command: Sequence[str], cwd: Path, **env: str) -> tuple[str, float]:
    """Run one step; its output and seconds taken, or fail the test with the output."""
    started = time.perf_counter()
    done = subprocess.run(
        command,
        cwd=cwd,
        env={**os.environ, **RASA_ENV, **env},
        capture_output=True,
        text=True,
        check=False,
    )
    seconds = time.perf_counter() - started
    if done.returncode != 0:
        pytest.fail(f"{' '.join(command[:3])} exited {done.returncode}:\n{done.stdout[-3000:]}"
                    f"\n{done.stderr[-3000:]}")  # fmt: skip
    return done.stdout, seconds


@pytest.fixture(scope="module")
def project(tmp_path_factory: pytest.TempPathFactory) -> InitProject:
    """Rasa's starter project, set up by `personalize init`, validated and trained."""
    rasa = PROJECT / RASA_VENV / "bin" / "rasa"
    scaffold = rasa_scaffold(rasa) if rasa.exists() else None
    if scaffold is None:
        reason = "no Rasa environment: run `make rasa-train`"
        if os.environ.get("CI"):
            pytest.fail(f"CI must run the e2e suite, but there is {reason}")
        pytest.skip(reason)
    folder = tmp_path_factory.mktemp("init") / "shop"
    shutil.copytree(scaffold, folder)
    personalize = [sys.executable, "-m", "rasa_personalize.cli"]
    init_output, init_s = run([*personalize, "init", str(folder)], folder.parent)
    run([str(rasa), "data", "validate"], folder)
    models = folder.parent / "models"
    _, train_s = run(
        [str(rasa), "train", "--fixed-model-name", "shop", "--out", str(models)], folder
    )
    # Seen with `pytest -s`: how long adopting the plugin takes, Rasa's training included.
    print(f"\npersonalize init: {init_s:.1f} s, rasa train: {train_s:.1f} s")
    return InitProject(folder, rasa, models / "shop.tar.gz", init_output, init_s, train_s)


@pytest.fixture(scope="module")
def assistant(project: InitProject) -> Iterator[RunningAssistant]:
    """Rasa with the trained starter model, and our action server in the project folder
    (so it serves the project's `actions` package and reads its personalization.yml)."""
    folder = project.folder.parent
    url = f"sqlite:///{folder / 'shop.db'}"
    _seed(url, folder / "personalize-models")
    running = RunningAssistant(
        RasaSetup(project.folder, project.rasa, project.model),
        database_url=url,
        log_dir=folder / "logs",
        extra_env={
            "PERSONALIZE_SECRET_KEY": SECRET,
            "PERSONALIZE_MODEL_DIR": str(folder / "personalize-models"),
        },
    )
    with running:
        yield running


def execute(assistant: RunningAssistant, sender: str, response: str) -> list[str]:
    """Have Rasa say ``response`` in the conversation: the texts of the variation it picks
    from the conversation's slots. (The starter's stories never ask for our example
    responses, so the dialogue policy would not choose them.)"""
    quoted = urllib.parse.quote(sender, safe="")
    request = urllib.request.Request(
        f"{assistant.rasa_url}/conversations/{quoted}/execute",
        data=json.dumps({"name": response}).encode(),
        headers={"Content-Type": "application/json"},
        method="POST",
    )
    with urllib.request.urlopen(request, timeout=60) as answer:
        body: dict[str, Any] = json.loads(answer.read())
    return [str(message["text"]) for message in body.get("messages", []) if message.get("text")]


def conversation() -> str:
    return f"init-{uuid.uuid4().hex[:12]}"


def test_init_writes_the_plugin_into_the_project_rasa_trains(project: InitProject) -> None:
    """The domain, both starters and the action endpoint are written; Rasa validated and
    trained the project (the fixture fails on a non-zero exit)."""
    wrote = f"wrote {project.folder / 'domain.yml'}: {len(SLOT_CONTRACT)} slots, "
    assert wrote in project.init_output
    assert (project.folder / "personalization.yml").is_file()
    assert (project.folder / "tags.yml").is_file()
    assert project.model.is_file()


def test_rasa_reads_the_action_endpoint_init_wrote(project: InitProject) -> None:
    """Rasa's own endpoint reader finds our URL and sends the token from its environment."""
    script = (
        "import sys; from rasa.utils.endpoints import read_endpoint_config; "
        "e = read_endpoint_config(sys.argv[1], 'action_endpoint'); print(e.url, e.token)"
    )
    python = project.rasa.with_name("python")
    output, _ = run(
        [str(python), "-c", script, "endpoints.yml"],
        project.folder,
        PERSONALIZE_WEBHOOK_TOKEN="a-token-of-24-characters",
    )
    assert output.split() == ["http://localhost:5055/webhook", "a-token-of-24-characters"]


def test_a_gold_member_is_recognised_through_rasa(assistant: RunningAssistant) -> None:
    """demo-loyal says hello: the user's own greeting answers, our session start set the
    profile slots, and the example response speaks to a Gold member."""
    sender = conversation()
    greeting = assistant.say(sender, "hello", user_id="demo-loyal")
    assert greeting  # the starter's stories answer a greeting
    slots = assistant.slots(sender)
    assert (slots["customer_segment"], slots["loyalty_tier"]) == ("loyal", "gold")
    assert slots["is_returning_customer"] is True
    # The starter personalization.yml: gold and platinum members get exclusive access.
    assert slots["offer_type"] == "exclusive_access"
    assert execute(assistant, sender, "utter_loyalty_status") == [
        "You're a Gold member of our loyalty programme."
    ]
    assert execute(assistant, sender, "utter_offer") == ["You get early access to new collections."]


def test_a_bargain_hunter_gets_the_starter_discount(assistant: RunningAssistant) -> None:
    """demo-bargain: the starter rules give a price-sensitive customer 15% off."""
    sender = conversation()
    assistant.say(sender, "hi", user_id="demo-bargain")
    slots = assistant.slots(sender)
    assert (slots["customer_segment"], slots["offer_type"]) == ("price_sensitive", "discount")
    assert execute(assistant, sender, "utter_offer") == [
        "Good news: you get 15% off your next order."
    ]


def test_an_unknown_visitor_gets_the_defaults(assistant: RunningAssistant) -> None:
    """An id the store does not know: new-visitor slots and the unconditional wording."""
    sender = conversation()
    assistant.say(sender, "hello", user_id="someone-never-seen")
    slots = assistant.slots(sender)
    assert (slots["customer_segment"], slots["loyalty_tier"]) == ("new_visitor", "none")
    assert execute(assistant, sender, "utter_loyalty_status") == [
        "You're not in our loyalty programme yet."
    ]
