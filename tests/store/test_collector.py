"""The garbage collector pause around bulk reads."""

from __future__ import annotations

import gc
from collections.abc import Iterator

import pytest

from rasa_personalize.store.collector import collector_paused


@pytest.fixture
def collector_state() -> Iterator[None]:
    """Whatever a test does to the collector, it is on again afterwards."""
    yield
    gc.enable()


@pytest.mark.usefixtures("collector_state")
def test_paused_inside_and_on_again_after() -> None:
    """Off inside the block, on after it, also when the block raises."""
    gc.enable()
    with collector_paused():
        assert not gc.isenabled()
    assert gc.isenabled()
    with pytest.raises(RuntimeError), collector_paused():
        raise RuntimeError("boom")
    assert gc.isenabled()


@pytest.mark.usefixtures("collector_state")
def test_a_collector_that_was_off_stays_off() -> None:
    """The pause does not switch on a collector its caller had switched off."""
    gc.disable()
    with collector_paused():
        assert not gc.isenabled()
    assert not gc.isenabled()
