"""The experiment report's HTML page: self-contained, names every arm, flags a broken split."""

from __future__ import annotations

import base64
import re
import sys
from datetime import date, timedelta

import pytest

from rasa_personalize.errors import MissingExtraError
from rasa_personalize.experiments.report_html import render_html
from rasa_personalize.experiments.stats import ArmCounts, ExperimentInputError, analyze

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
START = date(2026, 11, 1)


def daily_counts(
    days: int, per_day: dict[str, tuple[int, int]]
) -> list[tuple[date, dict[str, tuple[int, int]]]]:
    """Cumulative counts of ``days`` days with the same (exposures, conversions) each day."""
    return [
        (
            START + timedelta(days=day),
            {name: (n * (day + 1), x * (day + 1)) for name, (n, x) in per_day.items()},
        )
        for day in range(days)
    ]


def images(page: str) -> list[bytes]:
    return [
        base64.b64decode(data) for data in re.findall(r'src="data:image/png;base64,([^"]+)"', page)
    ]


def test_the_page_has_every_arm_two_pictures_and_no_external_link() -> None:
    """Arm names (escaped), the decision, two embedded PNGs and nothing fetched from outside."""
    per_day = {"control": (700, 35), "warm<greeting>": (700, 55), "short": (700, 34)}
    cumulative = daily_counts(14, per_day)
    arms = [ArmCounts(name, 1, n, x) for name, (n, x) in cumulative[-1][1].items()]
    analysis = analyze(arms, "control", history=[counts for _, counts in cumulative[:-1]])
    page = render_html(analysis, "greeting_test", cumulative)
    assert page.startswith("<!DOCTYPE html>")
    assert "<title>Experiment greeting_test</title>" in page
    assert "<td>control (control)</td>" in page
    assert "<td>warm&lt;greeting&gt;</td>" in page
    assert "warm<greeting>" not in page
    assert "<td>short</td>" in page
    assert '<td class="verdict-better">better</td>' in page
    assert '<td class="verdict-inconclusive">inconclusive</td>' in page
    assert 'class="srm-flagged"' not in page
    assert "Sample ratio mismatch" not in page
    assert "follow the configured weights" in page
    pictures = images(page)
    assert len(pictures) == 2
    assert all(picture.startswith(PNG_SIGNATURE) for picture in pictures)
    assert all(len(picture) > 10_000 for picture in pictures)  # drawn, not blank canvases
    links = re.findall(r'(?:src|href)="([^"]*)"', page)
    assert links
    assert all(link.startswith("data:image/png;base64,") for link in links)
    without_pictures = re.sub(r"base64,[^\"]+", "", page)
    assert not re.search(r"https?:|url\(|@import|<script|<link", without_pictures)


def test_a_sample_ratio_mismatch_is_shown_in_red() -> None:
    """A flagged split gets the red banner and red exposure cells."""
    arms = [ArmCounts("control", 1, 10_500, 500), ArmCounts("b", 1, 9_500, 480)]
    analysis = analyze(arms, "control")
    assert analysis.srm_flagged
    page = render_html(
        analysis, "split", daily_counts(3, {"control": (3500, 166), "b": (3166, 160)})
    )
    assert '<p class="srm srm-flagged">Sample ratio mismatch' in page
    assert '<td class="srm-flagged">10,500</td>' in page
    assert re.search(r"\.srm-flagged \{ color: #B00020;", page)


def test_no_daily_counts_and_an_empty_arm_still_render() -> None:
    """Without days, and with an arm never shown, the page says so instead of failing."""
    arms = [ArmCounts("control", 1, 4, 1), ArmCounts("b", 1, 0, 0)]  # too few to test the split
    page = render_html(analyze(arms, "control"), "new", [])
    assert "<td>b</td>" in page
    assert "No daily counts with exposures in control and another arm yet." in page
    assert "Sample ratio not tested" in page
    assert len(images(page)) == 1  # the rates picture, with control's rate only


def test_days_out_of_order_are_refused() -> None:
    """Cumulative counts must go forward in time."""
    analysis = analyze([ArmCounts("control", 1, 10, 1)], "control")
    cumulative = list(reversed(daily_counts(2, {"control": (5, 1)})))
    with pytest.raises(ExperimentInputError, match="days must be in increasing order"):
        render_html(analysis, "x", cumulative)


def test_without_matplotlib_the_error_names_the_extra(monkeypatch: pytest.MonkeyPatch) -> None:
    """The reports extra is missing: a MissingExtraError that says what to install."""
    monkeypatch.setitem(sys.modules, "matplotlib", None)
    analysis = analyze([ArmCounts("control", 1, 10, 1)], "control")
    with pytest.raises(MissingExtraError, match=r"rasa-personalize\[reports\]"):
        render_html(analysis, "x", [])
