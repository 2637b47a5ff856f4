"""docs/operations/: the alert rules and the Grafana dashboard, checked by Prometheus' own
promtool and against the metrics the code exports."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import REGISTRY

from rasa_personalize import metrics
from tests.prometheus_tools import require_tool

ROOT = Path(__file__).resolve().parent.parent
ALERTS = ROOT / "docs" / "operations" / "alerts.yml"
ALERT_CASES = ROOT / "tests" / "data" / "alert_rules_test.yml"
DASHBOARD = ROOT / "docs" / "operations" / "grafana-dashboard.json"
METRIC_NAME = re.compile(r"\bpersonalize_[a-z_]+\b")


def promtool(*arguments: str, cwd: Path = ROOT) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [require_tool("promtool"), *arguments],
        cwd=cwd,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def exported_names() -> set[str]:
    """Every sample name the plugin's metrics can have."""
    metrics.server_metrics()
    metrics.event_metrics()
    metrics.worker_metrics()
    metrics.broker_metrics()
    suffixes = {"counter": ("_total",), "histogram": ("_bucket", "_count", "_sum"), "gauge": ("",)}
    names = {metrics.MODEL_AGE}
    for family in REGISTRY.collect():
        if family.name.startswith("personalize_"):
            names.update(family.name + suffix for suffix in suffixes.get(family.type, ("",)))
    return names


def dashboard_expressions() -> list[str]:
    document: dict[str, Any] = json.loads(DASHBOARD.read_text())
    return [target["expr"] for panel in document["panels"] for target in panel.get("targets", [])]


@pytest.mark.prometheus
def test_promtool_checks_the_alert_rules() -> None:
    result = promtool("check", "rules", str(ALERTS))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS: 7 rules found" in result.stdout


@pytest.mark.prometheus
def test_each_alert_fires_on_its_case_and_not_on_its_look_alike() -> None:
    """`promtool test rules`: series in, expected alerts (labels, annotations) out."""
    result = promtool("test", "rules", ALERT_CASES.name, cwd=ALERT_CASES.parent)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "SUCCESS" in result.stdout


@pytest.mark.prometheus
def test_promtool_parses_every_dashboard_query(tmp_path: Path) -> None:
    """Each panel's PromQL, as recording rules (Grafana's $__rate_interval as 5m)."""
    expressions = dashboard_expressions()
    rules = {
        "groups": [
            {
                "name": "dashboard",
                "rules": [
                    {"record": f"dashboard:query_{n}", "expr": e.replace("$__rate_interval", "5m")}
                    for n, e in enumerate(expressions)
                ],
            }
        ]
    }
    path = tmp_path / "dashboard-rules.yml"
    path.write_text(json.dumps(rules))  # JSON is YAML
    result = promtool("check", "rules", str(path))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"SUCCESS: {len(expressions)} rules found" in result.stdout


def test_alerts_and_dashboard_name_only_exported_metrics() -> None:
    """A renamed metric must not leave a silent alert or an empty panel behind."""
    referenced = set(METRIC_NAME.findall(ALERTS.read_text()))
    referenced |= {name for e in dashboard_expressions() for name in METRIC_NAME.findall(e)}
    assert referenced
    assert referenced - exported_names() == set()


def test_the_dashboard_shows_every_metric_of_the_issue() -> None:
    """Each family of the operations issue has a panel."""
    shown = {name for e in dashboard_expressions() for name in METRIC_NAME.findall(e)}
    assert {
        "personalize_action_seconds_count",
        "personalize_action_seconds_bucket",
        "personalize_defaults_total",
        "personalize_breaker_open",
        "personalize_cache_requests_total",
        "personalize_recommendations_total",
        "personalize_model_info",
        "personalize_model_age_seconds",
        "personalize_events_total",
        "personalize_stream_pending",
        "personalize_stream_dead_letters",
        "personalize_worker_batch_seconds_bucket",
        "personalize_broker_messages_total",
        "personalize_broker_batch_seconds_bucket",
        "personalize_broker_conversations",
    } <= shown


def test_the_dashboard_uses_its_datasource_variable() -> None:
    """Importable into any Grafana: every query goes to the chosen Prometheus."""
    document = json.loads(DASHBOARD.read_text())
    variables = {v["name"]: v for v in document["templating"]["list"]}
    assert variables["datasource"]["query"] == "prometheus"
    for panel in document["panels"]:
        for target in panel.get("targets", []):
            assert target["datasource"] == {"type": "prometheus", "uid": "${datasource}"}
