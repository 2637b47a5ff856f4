"""Generated requests against the real server: every ``/personalize/*`` operation of the
served OpenAPI document gets at least 1,000 of them, and none may fail the server, break
the document's promises or send back a canary planted in what it was given.

The server is ``personalize serve`` (the plugin installed as in production) on a loopback
port, over a fresh SQLite store with a few products, customers and a key of each scope.
Schemathesis generates each operation's requests from ``GET /personalize/openapi.json``,
half fitting the document and half not; Hypothesis then draws, for every case, the key it
is sent with (most often one the operation allows) and where canaries go: the customer id
in the path, strings and keys of the body, the key itself.

A canary is ``CANARY_PREFIX`` and a serial number, unique per request. The API gives back
a caller's own data on purpose (a profile that a PUT stored, event ids in the batch
answer, the id in the consent document), so the :class:`CanaryLedger` knows which
canaries were stored for which customer, by answers that accepted them, and allows
exactly those in that customer's profile, consent and export. Everywhere else (headers,
every error answer, rejection reasons, another customer's data, the server's log) a
canary is a leak.
"""

from __future__ import annotations

import asyncio
import copy
import gzip
import json
import os
import re
import sys
import time
import zlib
from collections import Counter
from collections.abc import Collection, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any
from urllib.parse import quote, unquote, urlsplit

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, given, note, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode
from schemathesis.checks import not_a_server_error
from schemathesis.core import NotSet
from schemathesis.specs.openapi.checks import (
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
    status_code_conformance,
)

from rasa_personalize.events.api import EVENTS_PATH, OPENAPI_PATH, PROFILES_PATH
from rasa_personalize.events.apikeys import create_api_key, revoke_api_key
from rasa_personalize.events.openapi import SECURITY_SCHEME, build_openapi_document
from rasa_personalize.processes import ServerProcess, free_port
from rasa_personalize.store.database import StoreTimeouts
from rasa_personalize.store.migrate import upgrade
from rasa_personalize.store.sql_store import SqlStore
from tests.factories import add_product

pytestmark = [pytest.mark.server, pytest.mark.fuzz]

EXAMPLES_PER_OPERATION = 1_000
# Most cases must reach the handlers, not stop at the key check.
MIN_AUTHORIZED_SHARE = 0.6
CANARY_PREFIX = "CANARYzq81"
SECRET = "fuzz-test-secret-key-0123456789"
SKUS = ("SKU-FUZZ-1", "SKU-FUZZ-2", "SKU-FUZZ-3")
VALID_TIME = "2026-01-01T10:00:00Z"
HTTP_METHODS = ("get", "put", "post", "delete", "patch")
CHECKS = [
    not_a_server_error,
    status_code_conformance,
    content_type_conformance,
    response_headers_conformance,
    response_schema_conformance,
]
# Who sends a case. Hypothesis shrinks toward the first: a key the operation allows.
CALLERS = ("allowed", "allowed", "allowed", "allowed", "admin", "other scope", "revoked",
           "unknown", "canary key", "no key", "basic scheme")  # fmt: skip
DENIED = {"other scope": 403, "revoked": 401, "unknown": 401, "canary key": 401,
          "no key": 401, "basic scheme": 401}  # fmt: skip
# Where a canary goes in a string: mostly nowhere, so most requests stay well formed.
PLACEMENTS = ("keep", "keep", "keep", "keep", "prefix", "suffix", "replace")
# What the path's customer id becomes: a seeded customer's (so that reads find data; these
# ids hold a canary too), or the generated one with or without a canary.
PATH_IDS = ("seeded", "prefix", "suffix", "replace", "generated")
# Request headers that get canaries too (Content-Type and the key are the test's own).
PLANTED_HEADERS = frozenset({"content-encoding"})
# Answers Sanic gives before any handler runs, in the plugin's short form.
ROUTER_ANSWERS = {404: "not found", 413: "payload too large"}


def fuzzed_operations() -> list[tuple[str, str]]:
    """(method, path) of every operation that takes input (the spec's own route takes none)."""
    paths = build_openapi_document()["paths"]
    return [
        (method.upper(), path)
        for path, item in paths.items()
        for method in item
        if method in HTTP_METHODS and path != OPENAPI_PATH
    ]


@dataclass
class CanaryLedger:
    """Issues canaries and remembers which were stored for which customer."""

    issued: int = 0
    stored: dict[str, set[str]] = field(default_factory=dict)

    def new(self) -> str:
        self.issued += 1
        return f"{CANARY_PREFIX}{self.issued:06d}"

    def store(self, customer: str, text: str) -> None:
        self.stored.setdefault(customer.strip(), set()).update(canaries_in(text))

    def of(self, customer: str) -> set[str]:
        return self.stored.get(customer.strip(), set())


def canaries_in(text: str) -> list[str]:
    """Every canary in ``text``, lower-cased (stored categories are), cut ones included."""
    return re.findall(f"{CANARY_PREFIX.lower()}[0-9]{{0,6}}", text.lower())


def unexpected(text: str, allowed: Collection[str] = ()) -> list[str]:
    """The canaries in ``text`` that are not ``allowed``."""
    return [found for found in canaries_in(text) if found not in allowed]


@dataclass
class Tally:
    """What one operation's run sent and got."""

    cases: int = 0
    statuses: Counter[int] = field(default_factory=Counter)
    canaries: int = 0
    waited_s: float = 0.0  # on the server's answers

    def summary(self, label: str, seconds: float) -> str:
        share = 1 - self.statuses[401] / self.cases
        codes = ", ".join(f"{code}: {n}" for code, n in sorted(self.statuses.items()))
        return (
            f"{label}: {self.cases} cases in {seconds:.1f} s ({self.waited_s:.1f} s waiting for "
            f"answers), {share:.0%} past the key check, "
            f"{self.canaries} canaries planted; {codes}"
        )


@dataclass(frozen=True)
class Answer:
    """What the server answered, decoded once."""

    url: str
    status: int
    headers: dict[str, str]
    text: str

    @classmethod
    def of(cls, response: requests.Response) -> Answer:
        text = response.content.decode("utf-8", "replace")
        return cls(response.url, response.status_code, dict(response.headers), text)

    def json(self) -> Any:
        return json.loads(self.text)

    @property
    def error(self) -> str | None:
        if self.status < 400:
            return None
        message: str = self.json()["error"]
        return message


@dataclass
class Served:
    """The running server and what the test knows about its store."""

    base_url: str
    keys: dict[str, str]
    seeded: list[str]
    # Customers the DELETE run erases, so that the others keep their data for reads.
    erasable: list[str]
    ledger: CanaryLedger
    log_path: Path
    session: requests.Session


async def seed_store(url: str) -> dict[str, str]:
    """Products and a key of each scope (plus a revoked one); returns scope -> key."""
    store = SqlStore(url, StoreTimeouts(connect_s=5.0, statement_s=None))
    keys: dict[str, str] = {}
    try:
        async with store.sessions.begin() as session:
            for number, sku in enumerate(SKUS):
                await add_product(session, sku, ("shoes", "socks", "bags")[number])
            for scope in ("ingest", "read", "admin"):
                _, keys[scope] = await create_api_key(session, scope, label=f"fuzz {scope}")
            record, keys["revoked"] = await create_api_key(session, "admin", label="revoked")
            await revoke_api_key(session, record.id)
    finally:
        await store.dispose()
    return keys


def seed_customers(served: Served) -> None:
    """Customers with a profile, events and consent, made through the API itself; each
    holds a canary stored on purpose (allowed in its own answers, nowhere else)."""
    admin = {"Authorization": f"Bearer {served.keys['admin']}"}
    for number in range(6):
        customer = f"{served.ledger.new()}.shopper{number}@example.com"
        (served.seeded if number < 3 else served.erasable).append(customer)
        path = f"{served.base_url}/personalize/profiles/{quote(customer, safe='')}"
        profile = {
            "loyalty_tier": "gold",
            "demographics": {"age": 30 + number, "city": served.ledger.new()},
            "attributes": {"note": served.ledger.new()},
        }
        answer = served.session.put(path, json=profile, headers=admin, timeout=10)
        assert answer.status_code == 201, answer.text
        served.ledger.store(customer, json.dumps(profile))
        events = [
            {"event_id": f"seed-{number}-{i}", "customer": customer, "product": sku,
             "kind": "purchase", "timestamp": VALID_TIME, "location": served.ledger.new()}
            for i, sku in enumerate(SKUS)
        ]  # fmt: skip
        answer = served.session.post(
            served.base_url + EVENTS_PATH, json={"events": events}, headers=admin, timeout=10
        )
        assert answer.status_code == 200, answer.text
        assert len(answer.json()["accepted"]) == len(SKUS), answer.text
        served.ledger.store(customer, json.dumps(events))
        consent = {"grant": ["tracking"], "policy_version": served.ledger.new()}
        answer = served.session.put(f"{path}/consent", json=consent, headers=admin, timeout=10)
        assert answer.status_code == 200, answer.text
        served.ledger.store(customer, json.dumps(consent))


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Served]:
    """``personalize serve`` over a seeded SQLite store, on a loopback port."""
    folder = tmp_path_factory.mktemp("fuzz")
    url = f"sqlite:///{folder / 'store.db'}"
    upgrade(url)
    keys = asyncio.run(seed_store(url))
    port = free_port()
    env = {
        **os.environ,
        "PERSONALIZE_DATABASE_URL": url,
        "PERSONALIZE_SECRET_KEY": SECRET,
        "PERSONALIZE_MODEL_DIR": str(folder / "models"),
        # The demo's tag rules: ingestion re-tags customers, so tags show in profiles.
        "PERSONALIZE_TAGS_PATH": str(Path(__file__).parents[2] / "tags.yml"),
    }
    base = f"http://127.0.0.1:{port}"
    command = [sys.executable, "-m", "rasa_personalize.cli", "serve", "--host", "127.0.0.1"]
    log_path = folder / "server.log"
    with (
        ServerProcess(
            [*command, "--port", str(port)],
            f"{base}/health",
            env=env,
            log_path=log_path,
            cwd=folder,
        ),
        requests.Session() as session,
    ):
        served = Served(base, keys, [], [], CanaryLedger(), log_path, session)
        seed_customers(served)
        yield served
    # Logs may name routes and error classes, never what a caller sent.
    leaked = unexpected(log_path.read_text(errors="replace"))
    assert not leaked, f"canaries in the server log: {leaked[:5]}"


@pytest.fixture(scope="module")
def api_schema(served: Served) -> Any:
    """The document as the server serves it, loaded by schemathesis."""
    return schemathesis.openapi.from_url(served.base_url + OPENAPI_PATH)


def planted(text: str, data: st.DataObject, ledger: CanaryLedger, tally: Tally) -> str:
    """``text``, or a new canary before, after or instead of it (as drawn)."""
    placement = data.draw(st.sampled_from(PLACEMENTS))
    if placement == "keep":
        return text
    tally.canaries += 1
    canary = ledger.new()
    return {"prefix": canary + text, "suffix": text + canary, "replace": canary}[placement]


def plant(value: Any, data: st.DataObject, ledger: CanaryLedger, tally: Tally) -> Any:
    """``value`` with canaries drawn into some of its strings and object keys."""

    def into(text: str) -> str:
        return planted(text, data, ledger, tally)

    if isinstance(value, str):
        return into(value)
    if isinstance(value, list):
        return [plant(item, data, ledger, tally) for item in value]
    if isinstance(value, dict):
        return {
            (into(key) if isinstance(key, str) else key): plant(item, data, ledger, tally)
            for key, item in value.items()
        }
    return value


def make_storable(body: Any, data: st.DataObject, served: Served) -> Any:
    """Point some generated events at a known sku, a valid time and a seeded customer:
    random skus and dates are almost never in the catalogue and the accepted range."""
    events = body.get("events") if isinstance(body, dict) else None
    if not isinstance(events, list):
        return body
    for event in events:
        if isinstance(event, dict) and data.draw(st.booleans()):
            event["product"] = data.draw(st.sampled_from(SKUS))
            event["timestamp"] = VALID_TIME
            if data.draw(st.booleans()):
                event["customer"] = data.draw(st.sampled_from(served.seeded))
    return body


def authorization(caller: str, scope: str, served: Served, ledger: CanaryLedger) -> str | None:
    keys = served.keys
    return {
        "allowed": f"Bearer {keys[scope]}",
        "admin": f"Bearer {keys['admin']}",
        "other scope": f"Bearer {keys['ingest' if scope == 'read' else 'read']}",
        "revoked": f"Bearer {keys['revoked']}",
        "unknown": "Bearer not-a-key-anyone-issued",
        "canary key": f"Bearer {ledger.new()}",
        "no key": None,
        "basic scheme": f"Basic {keys[scope]}",
    }[caller]


def compressed(case: Any, data: st.DataObject) -> bytes | None:
    """The body compressed as the case's Content-Encoding says, for most such cases."""
    encoding = next((v for k, v in case.headers.items() if k.lower() == "content-encoding"), None)
    if encoding not in ("gzip", "deflate") or case.body is None or not data.draw(st.booleans()):
        return None
    text = case.body if isinstance(case.body, bytes) else json.dumps(case.body).encode()
    return gzip.compress(text) if encoding == "gzip" else zlib.compress(text)


def customer_sent(answer: Answer) -> str | None:
    """The customer id of a profile URL as the server reads it (decoded, trimmed)."""
    prefix = f"{PROFILES_PATH}/"
    path = urlsplit(answer.url).path
    if not path.startswith(prefix):
        return None
    return unquote(path.removeprefix(prefix).split("/")[0]).strip()


def check_canaries(case: Any, answer: Answer, sent_body: Any, served: Served) -> list[str]:
    """Canaries in the answer that are not the caller's own stored data."""
    problems = [f"header {name}" for name, value in answer.headers.items()
                if unexpected(f"{name}: {value}")]  # fmt: skip
    text = answer.text
    if answer.status >= 400 or not text:
        return problems + [f"error answer: {c}" for c in unexpected(text)]
    document = answer.json()
    customer = customer_sent(answer)
    operation = f"{case.method} {case.operation.path}"
    if operation.endswith("/consent"):
        # The consent document names the customer as the caller gave the id.
        assert document.pop("customer") == customer, "consent answer for another id"
    if case.operation.path == EVENTS_PATH:
        sent_ids = {
            str(event.get("event_id")).strip()
            for event in (sent_body or {}).get("events", [])
            if isinstance(event, dict)
        }
        for listed in ("accepted", "duplicates", "suppressed"):
            assert set(document[listed]) <= sent_ids, f"{listed} holds ids never sent"
        for rejection in document["rejected"]:
            assert rejection["event_id"] is None or rejection["event_id"] in sent_ids
            rejection["event_id"] = None
            problems += [f"rejection: {c}" for c in unexpected(json.dumps(rejection))]
        return problems
    allowed = served.ledger.of(customer) if customer is not None else set()
    return problems + [
        f"{operation} answer: {c}" for c in unexpected(json.dumps(document), allowed)
    ]


def record_stored(case: Any, answer: Answer, sent_body: Any, served: Served) -> None:
    """Remember the canaries an accepted write stored, under the customer they belong to."""
    if answer.status >= 300 or case.method not in ("PUT", "POST"):
        return
    if case.operation.path == EVENTS_PATH:
        accepted = set(answer.json()["accepted"])
        for event in sent_body["events"]:
            if isinstance(event, dict) and str(event.get("event_id")).strip() in accepted:
                served.ledger.store(str(event.get("customer")), json.dumps(event))
        return
    customer = customer_sent(answer)
    assert customer is not None
    served.ledger.store(customer, json.dumps(sent_body))


@pytest.mark.parametrize(("method", "path"), fuzzed_operations())
def test_generated_requests(served: Served, api_schema: Any, method: str, path: str) -> None:
    """1,000+ generated requests per operation: no 5xx, every answer as documented, no
    canary echoed, and the key check answers 401/403 exactly for the callers it refuses."""
    operation = api_schema[path][method]
    security = operation.definition.raw.get("security", [])
    scope = security[0][SECURITY_SCHEME][0]
    strategy = st.one_of(
        operation.as_strategy(generation_mode=GenerationMode.POSITIVE),
        operation.as_strategy(generation_mode=GenerationMode.NEGATIVE),
    )
    tally = Tally()
    ledger = served.ledger

    @settings(
        max_examples=EXAMPLES_PER_OPERATION,
        deadline=None,
        database=None,
        suppress_health_check=list(HealthCheck),
    )
    @given(case=strategy, data=st.data())
    def send(case: Any, data: st.DataObject) -> None:
        tally.cases += 1
        if "customer" in case.path_parameters:
            choice = data.draw(st.sampled_from(PATH_IDS))
            generated = str(case.path_parameters["customer"])
            customer = generated
            if choice == "seeded":
                pool = served.erasable if method == "DELETE" else served.seeded
                customer = data.draw(st.sampled_from(pool))
            elif choice != "generated":
                tally.canaries += 1
                canary = ledger.new()
                customer = {
                    "prefix": canary + generated, "suffix": generated + canary, "replace": canary
                }[choice]  # fmt: skip
            # New containers: Hypothesis may hand the same generated ones to a replay.
            case.path_parameters = {**case.path_parameters, "customer": customer}
        has_body = not isinstance(case.body, NotSet)
        if has_body:
            body = copy.deepcopy(case.body)
            case.body = plant(make_storable(body, data, served), data, ledger, tally)
        caller = data.draw(st.sampled_from(CALLERS))
        # The request as schemathesis serialises it, then the drawn key (a negative case
        # may have dropped the header: which key is sent is this test's choice) and body.
        request = case.as_transport_kwargs(base_url=served.base_url)
        request["headers"] = {
            name: planted(value, data, ledger, tally) if name.lower() in PLANTED_HEADERS else value
            for name, value in request["headers"].items()
            if name.lower() != "authorization"
        }
        header = authorization(caller, scope, served, ledger)
        if header is not None:
            request["headers"]["Authorization"] = header
        body = compressed(case, data)
        if body is not None:
            request.pop("json", None)
            request["data"] = body
        sent_at = time.perf_counter()
        response = served.session.request(**request, timeout=30)
        tally.waited_s += time.perf_counter() - sent_at
        tally.statuses[response.status_code] += 1
        answer = Answer.of(response)
        note(f"{case.method} {case.formatted_path} {caller}: {request['headers']} {case.body!r}")
        note(f"-> {answer.status} {answer.text[:2000]}")
        case.validate_response(response, checks=CHECKS)
        if caller in DENIED and answer.error != ROUTER_ANSWERS.get(answer.status):
            assert answer.status == DENIED[caller], (caller, answer.status, answer.error)
        elif caller not in DENIED:
            assert answer.status not in (401, 403), (caller, answer.error)
        sent = case.body if has_body else None
        # First: an accepted write's own answer shows what it stored.
        record_stored(case, answer, sent, served)
        leaks = check_canaries(case, answer, sent, served)
        assert not leaks, f"canaries echoed: {leaks[:5]}"

    started = time.monotonic()
    send()
    print(tally.summary(f"{method} {path}", time.monotonic() - started))
    assert tally.cases >= EXAMPLES_PER_OPERATION
    assert tally.canaries > tally.cases // 10
    assert 1 - tally.statuses[401] / tally.cases >= MIN_AUTHORIZED_SHARE
    # The happy path was reached, not only refusals.
    assert any(200 <= status < 300 for status in tally.statuses)
