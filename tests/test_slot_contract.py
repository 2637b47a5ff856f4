"""The demo domain declares every slot the code can set, with the same type and values."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml
from rasa_sdk.executor import ActionExecutor

from rasa_personalize.plugin import register_plugin_actions
from rasa_personalize.slots import (
    PROFILE_SLOTS,
    SLOT_CONTRACT,
    SlotContractError,
    check_slot_value,
)

DOMAIN_PATH = Path(__file__).parent.parent / "domain.yml"


@pytest.fixture(scope="module")
def domain() -> dict[str, Any]:
    loaded: dict[str, Any] = yaml.safe_load(DOMAIN_PATH.read_text(encoding="utf-8"))
    return loaded


@pytest.mark.parametrize("name", sorted(SLOT_CONTRACT))
def test_contract_slot_is_declared_with_matching_type(domain: dict[str, Any], name: str) -> None:
    """Type, categorical values and influence on the policy match the code's contract."""
    spec = SLOT_CONTRACT[name]
    declared = domain["slots"].get(name)
    assert declared is not None, f"domain.yml does not declare slot {name!r}"
    assert declared["type"] == spec.type
    if spec.type == "categorical":
        assert [str(v) for v in declared["values"]] == list(spec.values)
    assert declared.get("influence_conversation", True) == spec.influences_conversation
    # Only the action server sets these: an NLU mapping would let a message overwrite them.
    assert declared["mappings"] == [{"type": "custom"}]


def test_every_slot_the_actions_emit_is_in_the_contract() -> None:
    """The slots the session actions set are a subset of the contract."""
    assert set(PROFILE_SLOTS) <= set(SLOT_CONTRACT)


def test_domain_lists_exactly_the_registered_actions(domain: dict[str, Any]) -> None:
    """Custom actions in the domain: the plugin's plus the demo shop's own, no more."""
    executor = ActionExecutor()
    executor.register_package("actions")
    register_plugin_actions(executor)
    custom = {a for a in domain["actions"] if a.startswith("action_")}
    assert custom == set(executor.actions)


def test_session_start_is_declared_so_rasa_calls_ours(domain: dict[str, Any]) -> None:
    """Rasa only calls a custom action_session_start if the domain lists it."""
    assert "action_session_start" in domain["actions"]


@pytest.mark.parametrize(
    ("name", "value", "allowed"),
    [
        ("loyalty_tier", "gold", True),
        ("loyalty_tier", "diamond", False),
        # a list is no category (and cannot be looked up in a set)
        ("loyalty_tier", ["gold"], False),
        ("loyalty_tier", None, True),
        ("discount_pct", 15, True),
        ("discount_pct", True, False),
        ("user_tags", ["premium"], True),
        ("user_tags", "premium", False),
    ],
)
def test_slot_values_are_checked_against_the_contract(
    name: str, value: object, allowed: bool
) -> None:
    """Values outside a slot's type or categories are refused with the slot's name."""
    if allowed:
        check_slot_value(name, value)
        return
    with pytest.raises(SlotContractError, match=name):
        check_slot_value(name, value)


def test_a_slot_outside_the_contract_is_refused() -> None:
    """Only contract slots may be set."""
    with pytest.raises(SlotContractError, match="not a contract slot"):
        check_slot_value("shoe_size", 42)
