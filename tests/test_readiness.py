"""``GET /ready`` through rasa-sdk's real Sanic app, with the plugin installed."""

from __future__ import annotations

import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from rasa_sdk.endpoint import create_app
from rasa_sdk.executor import ActionExecutor
from sanic import Sanic

from rasa_personalize.engine import PersonalizationService
from rasa_personalize.plugin import install
from rasa_personalize.recommend.als import AlsRecommender
from rasa_personalize.recommend.artifacts import als_dir, save_artifact
from rasa_personalize.runtime import install_service, shutdown_service
from rasa_personalize.store.sql_store import SqlStore
from tests.conftest import make_settings
from tests.recommend.conftest import checkerboard

# A password in a configured URL: no answer may ever show it.
REDIS_PASSWORD = "s3cret-redis-password"  # a test value, not a secret

Serve = Callable[..., Awaitable[Sanic[Any, Any]]]


@pytest.fixture
def trained_model_dir(tmp_path: Path) -> Path:
    """A model directory holding one small trained ALS model (the checkerboard)."""
    model_dir = tmp_path / "models"
    model = AlsRecommender(
        factors=2, regularization=0.1, iterations=5, random_state=0, num_threads=1
    ).fit(checkerboard())
    save_artifact(model, als_dir(model_dir))
    return model_dir


@pytest.fixture
async def serve() -> AsyncIterator[Serve]:
    """Builds an installed app whose service has the given settings (and store)."""

    async def build(database_url: str, store: SqlStore | None = None, **settings: Any) -> Any:
        install_service(PersonalizationService(make_settings(database_url, **settings), store))
        return install(create_app(ActionExecutor()))

    yield build
    await shutdown_service()


@pytest.fixture
def unused_port() -> int:
    """A local port nothing listens on (bound, then released)."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
    return port


@pytest.fixture
def silent_port() -> Iterator[int]:
    """A local port that accepts connections and never answers (a hanging dependency)."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        yield listener.getsockname()[1]


async def get_ready(app: Sanic[Any, Any]) -> tuple[int, dict[str, Any], str, float]:
    started = time.monotonic()
    _, response = await app.asgi_client.get("/ready")
    return response.status, response.json, response.text, time.monotonic() - started


async def test_ready_with_store_model_and_valid_rules(
    serve: Serve, sqlite_store: SqlStore, sqlite_url: str, trained_model_dir: Path
) -> None:
    """Everything answers: 200, every check ok, Redis not configured counts as ready."""
    app = await serve(sqlite_url, sqlite_store, model_dir=trained_model_dir)
    status, body, _, _ = await get_ready(app)
    assert status == 200
    assert body["ready"] is True
    assert set(body["checks"]) == {"store", "redis", "model", "rules"}
    assert all(check["ok"] for check in body["checks"].values())
    assert body["checks"]["redis"] == {"ok": True, "detail": "not configured"}
    assert body["checks"]["store"]["detail"] == "store answered SELECT 1"
    assert str(trained_model_dir) in body["checks"]["model"]["detail"]


async def test_store_down_is_not_ready(
    serve: Serve, tmp_path: Path, trained_model_dir: Path
) -> None:
    """A store that cannot be opened: 503 naming the store by error class only."""
    missing = f"sqlite:///{tmp_path / 'no-such-folder' / 'store.db'}"
    app = await serve(missing, model_dir=trained_model_dir)
    status, body, _, _ = await get_ready(app)
    assert status == 503
    assert body["ready"] is False
    assert body["checks"]["store"] == {
        "ok": False,
        "detail": "store did not answer (OperationalError)",
    }
    assert body["checks"]["model"]["ok"] is True


async def test_no_model_is_not_ready_and_says_to_train(
    serve: Serve, sqlite_store: SqlStore, sqlite_url: str, tmp_path: Path
) -> None:
    """No trained model: 503 naming the model directory and `personalize train`."""
    model_dir = tmp_path / "models"
    app = await serve(sqlite_url, sqlite_store, model_dir=model_dir)
    status, body, _, _ = await get_ready(app)
    assert status == 503
    assert body["checks"]["model"] == {
        "ok": False,
        "detail": f"no trained model in {model_dir}: run personalize train",
    }
    assert body["checks"]["store"]["ok"] is True


async def test_broken_rules_file_is_not_ready(
    serve: Serve, sqlite_store: SqlStore, sqlite_url: str, trained_model_dir: Path, tmp_path: Path
) -> None:
    """A rule file with problems: 503 naming the file and how many problems it has."""
    rules = tmp_path / "personalization.yml"
    rules.write_text(
        "rules:\n"
        "  - name: typo\n"
        "    when: {segmnt: loyal}\n"
        "    then: {offer_type: discount, discount_pct: 500}\n",
        encoding="utf-8",
    )
    app = await serve(sqlite_url, sqlite_store, model_dir=trained_model_dir, rules_path=rules)
    status, body, _, _ = await get_ready(app)
    assert status == 503
    check = body["checks"]["rules"]
    assert check["ok"] is False
    assert check["detail"].startswith(f"{rules}: 2 problems")
    assert body["checks"]["store"]["ok"] is True


@pytest.mark.parametrize(
    "port_fixture",
    [
        "unused_port",  # nothing listens: refused at once
        "silent_port",  # accepts and never answers: the bound must cut it short
    ],
)
async def test_unreachable_redis_is_not_ready_within_the_bound(
    serve: Serve,
    sqlite_store: SqlStore,
    sqlite_url: str,
    trained_model_dir: Path,
    port_fixture: str,
    request: pytest.FixtureRequest,
) -> None:
    """Redis configured but not answering: 503 naming redis, no password, within ~2 s."""
    port = request.getfixturevalue(port_fixture)
    redis_url = f"redis://:{REDIS_PASSWORD}@127.0.0.1:{port}/0"
    app = await serve(sqlite_url, sqlite_store, model_dir=trained_model_dir, redis_url=redis_url)
    status, body, text, elapsed = await get_ready(app)
    assert status == 503
    assert body["checks"]["redis"]["ok"] is False
    assert body["checks"]["redis"]["detail"].startswith("redis did not answer PING")
    assert body["checks"]["store"]["ok"] is True
    assert REDIS_PASSWORD not in text
    assert elapsed < 2.0


async def test_ready_is_open_when_the_webhook_has_a_token(
    serve: Serve,
    sqlite_store: SqlStore,
    sqlite_url: str,
    trained_model_dir: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """Like /health, /ready needs no webhook token; /health stays rasa-sdk's own."""
    monkeypatch.setenv("PERSONALIZE_WEBHOOK_TOKEN", "t" * 40)
    app = await serve(sqlite_url, sqlite_store, model_dir=trained_model_dir)
    status, body, _, _ = await get_ready(app)
    assert (status, body["ready"]) == (200, True)
    _, health = await app.asgi_client.get("/health")
    assert (health.status, health.json) == (200, {"status": "ok"})
