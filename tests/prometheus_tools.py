"""Helpers of the metrics tests: reading samples, and Prometheus' own tools as processes.

``promtool`` and ``prometheus`` come from Debian's ``prometheus`` package (``make pytest``
installs it). Without them the tests that need them skip, except in CI (``CI=true``),
where they fail: a CI machine must run them.
"""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any, TypeVar

import pytest
from prometheus_client import REGISTRY
from prometheus_client.mmap_dict import MmapedDict
from prometheus_client.parser import text_string_to_metric_families

from rasa_personalize.processes import ServerProcess, free_port

T = TypeVar("T")


def sample(name: str, **labels: str) -> float:
    """This process's value of one sample (0 when it does not exist yet)."""
    return REGISTRY.get_sample_value(name, labels) or 0.0


def samples(text: str) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    """Every sample of a text exposition, by (name, labels)."""
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(text)
        for s in family.samples
    }


def value_in(text: str, name: str, **labels: str) -> float | None:
    """One sample of a text exposition, or None when it is not there."""
    return samples(text).get((name, frozenset(labels.items())))


def counts_by_process(folder: Path, bucket: str, **labels: str) -> dict[str, float]:
    """Each process's own count of a histogram, by pid: the sum of its ``bucket`` samples
    with ``labels`` in that process's file of a multi-process directory."""
    counts: dict[str, float] = {}
    for path in folder.glob("histogram_*.db"):
        total = 0.0
        for key, value, _timestamp, _position in MmapedDict.read_all_values_from_file(str(path)):
            _metric, name, found, _help = json.loads(key)
            if name == bucket and all(found.get(k) == v for k, v in labels.items()):
                total += value
        counts[path.stem.removeprefix("histogram_")] = total
    return counts


def require_tool(name: str) -> str:
    """The path of a Prometheus tool; skips without it, but fails in CI."""
    path = shutil.which(name)
    if path is None:
        message = f"{name} is not installed (Debian package prometheus: `make pytest` installs it)"
        if os.environ.get("CI", "").lower() in {"1", "true", "yes"}:
            pytest.fail(f"{message}; CI must run this test")
        pytest.skip(message)
    return path


def wait_until(check: Callable[[], T | None], timeout_s: float, what: str) -> T:
    """Poll ``check`` until it returns something other than None (a bounded wait)."""
    deadline = time.monotonic() + timeout_s
    while True:
        found = check()
        if found is not None:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout_s:.0f} s waiting for {what}")
        time.sleep(0.2)


def http_get(url: str, timeout_s: float = 10.0) -> tuple[int, str]:
    """Status and body of a GET, error statuses included."""
    try:
        with urllib.request.urlopen(url, timeout=timeout_s) as answer:  # loopback
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.read().decode()


class PrometheusServer:
    """A real Prometheus scraping ``targets`` every second, on a loopback port."""

    def __init__(self, folder: Path, targets: dict[str, str]) -> None:
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        folder.mkdir(parents=True, exist_ok=True)
        scrape_configs = [
            {
                "job_name": job,
                "scrape_interval": "1s",
                "scrape_timeout": "1s",
                "static_configs": [{"targets": [target]}],
            }
            for job, target in targets.items()
        ]
        config = folder / "prometheus.yml"
        # JSON is YAML: no YAML writer needed.
        config.write_text(
            json.dumps({"global": {"scrape_interval": "1s"}, "scrape_configs": scrape_configs})
        )
        self._process = ServerProcess(
            [
                require_tool("prometheus"),
                f"--config.file={config}",
                f"--storage.tsdb.path={folder / 'data'}",
                f"--web.listen-address=127.0.0.1:{self.port}",
            ],
            f"{self.url}/-/ready",
            log_path=folder / "prometheus.log",
        )

    def __enter__(self) -> PrometheusServer:
        self._process.start(timeout_s=60)
        return self

    def __exit__(self, *_: object) -> None:
        self._process.stop()

    def query(self, expression: str) -> list[dict[str, Any]]:
        """The instant vector of ``expression`` (Prometheus' HTTP API)."""
        query = urllib.parse.urlencode({"query": expression})
        status, body = http_get(f"{self.url}/api/v1/query?{query}")
        answer = json.loads(body)
        assert status == 200, body
        assert answer["status"] == "success", body
        result: list[dict[str, Any]] = answer["data"]["result"]
        return result

    def targets_up(self) -> list[dict[str, Any]]:
        """The active scrape targets and their health."""
        _, body = http_get(f"{self.url}/api/v1/targets")
        targets: list[dict[str, Any]] = json.loads(body)["data"]["activeTargets"]
        return targets


@contextmanager
def prometheus_scraping(folder: Path, targets: dict[str, str]) -> Iterator[PrometheusServer]:
    """A running :class:`PrometheusServer`, stopped at the end."""
    with PrometheusServer(folder, targets) as server:
        yield server
