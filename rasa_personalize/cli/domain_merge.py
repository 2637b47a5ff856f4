"""The plugin's part of a Rasa domain, merged into a user's domain without copying.

The slots come from :data:`rasa_personalize.slots.SLOT_CONTRACT`, the actions from
:func:`rasa_personalize.plugin.plugin_action_names` and the responses those actions utter
from :data:`rasa_personalize.responses.PLUGIN_RESPONSES`, so a user's domain never drifts
from what the action server sets and says. Files are edited with ruamel.yaml's round
trip: their comments, order and quoting stay; only what is missing is appended, and a
slot or response the user declares is never changed.

Not a command: the part ``personalize domain`` and ``personalize init`` share (command
modules import only :mod:`rasa_personalize.cli.common` and this). ``init`` also writes
:data:`EXAMPLE_RESPONSES`, conditional variations that show the slots at work, under the
names the domain does not declare yet.
"""

from __future__ import annotations

import io
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, Final

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from rasa_personalize.slots import SlotSpec

RASA_DOMAIN_VERSION: Final = "3.1"
# Written into a domain directory: Rasa merges every domain file it finds there.
DIRECTORY_FILE_NAME: Final = "rasa_personalize.yml"
SLOTS_HEADER: Final = "---- rasa-personalize slot contract (filled only by the action server) ----"


def _variations(slot: str, texts: dict[str, str], otherwise: str) -> list[dict[str, Any]]:
    """One variation per value of ``slot``, then the unconditional one."""
    conditional = [
        {"condition": [{"type": "slot", "name": slot, "value": value}], "text": text}
        for value, text in texts.items()
    ]
    return [*conditional, {"text": otherwise}]


# Where a new domain starts from: one variation per slot value. Rasa picks among the
# variations whose conditions all hold, so each response tests a single slot: two that
# held at once (a gold tier and a loyal segment) would be chosen between at random.
EXAMPLE_RESPONSES: Final[dict[str, list[dict[str, Any]]]] = {
    "utter_greet": _variations(
        "customer_segment",
        {
            "loyal": "Welcome back! It's great to see one of our valued members.",
            "frequent_buyer": "Welcome back, good to see you again so soon!",
            "price_sensitive": "Hi there! Looking for a good deal? Ask me about today's offers.",
            "at_risk": "Hi, we missed you! A lot has arrived since your last visit.",
            "browser": "Hi there! Take your time looking around; I'm here when you need me.",
        },
        otherwise="Hi, and welcome to our shop! How can I help you today?",
    ),
    "utter_offer": _variations(
        "offer_type",
        {
            "discount": "Good news: you get {discount_pct}% off your next order.",
            "free_shipping": "You get free shipping on your next order.",
            "exclusive_access": "You get early access to new collections.",
            "bundle": "Buy two matching items together and save on the set.",
        },
        otherwise="There's no special offer right now, but our bestsellers are worth a look.",
    ),
    "utter_loyalty_status": _variations(
        "loyalty_tier",
        {
            "none": "You're not in our loyalty programme yet.",
            "silver": "You're a Silver member of our loyalty programme.",
            "gold": "You're a Gold member of our loyalty programme.",
            "platinum": "You're a Platinum member, our highest tier.",
        },
        otherwise="I can't see your membership status right now. Please log in and ask again.",
    ),
}


class DomainFileError(Exception):
    """A domain file that cannot be read or merged; the message names the file."""


@dataclass
class MergePlan:
    """What ``add`` does to one domain: the slots and actions it adds, and what is there."""

    slots: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    responses: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to add."""
        return not self.slots and not self.actions and not self.responses


def slot_declaration(spec: SlotSpec) -> dict[str, Any]:
    """One contract slot as the domain declares it (the key order of the demo domain)."""
    declared: dict[str, Any] = {
        "type": spec.type,
        "influence_conversation": spec.influences_conversation,
    }
    if spec.type == "categorical":
        declared["values"] = list(spec.values)
    # Only the action server sets these: an NLU mapping would let a message overwrite them.
    declared["mappings"] = [{"type": "custom"}]
    return declared


def contract_slots() -> dict[str, dict[str, Any]]:
    """Every contract slot's declaration, in contract order."""
    from rasa_personalize.slots import SLOT_CONTRACT

    return {name: slot_declaration(spec) for name, spec in SLOT_CONTRACT.items()}


def plugin_actions() -> list[str]:
    """The plugin's action names, in registration order."""
    from rasa_personalize.plugin import plugin_action_names

    return plugin_action_names()


def plugin_responses() -> dict[str, list[dict[str, str]]]:
    """The responses the plugin's actions utter, as a domain declares them."""
    from rasa_personalize.responses import PLUGIN_RESPONSES

    return {name: [{"text": text}] for name, text in PLUGIN_RESPONSES.items()}


def round_trip_yaml() -> YAML:
    """A ruamel round-trip parser that keeps comments, order, quotes and long lines."""
    from ruamel.yaml import YAML

    yaml = YAML()
    yaml.preserve_quotes = True
    yaml.width = 4096  # never rewrap a user's long response texts
    return yaml


def to_yaml_nodes(value: Any) -> Any:
    """Plain data as ruamel nodes; categorical values that YAML could read as something
    other than a string (``none``, ``yes``) are quoted, as in the demo domain."""
    from ruamel.yaml.comments import CommentedMap, CommentedSeq
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    if isinstance(value, dict):
        return CommentedMap((key, to_yaml_nodes(item)) for key, item in value.items())
    if isinstance(value, list):
        return CommentedSeq(to_yaml_nodes(item) for item in value)
    if isinstance(value, str) and value.lower() in {"none", "null", "yes", "no", "on", "off"}:
        return DoubleQuotedScalarString(value)
    return value


def dump(yaml: YAML, data: Any) -> str:
    """``data`` as YAML text."""
    buffer = io.StringIO()
    yaml.dump(data, buffer)
    return buffer.getvalue()


def fragment_yaml(
    slots: dict[str, dict[str, Any]], actions: list[str], responses: dict[str, Any]
) -> str:
    """A domain file holding ``slots``, ``actions`` and ``responses`` (the ones not empty)."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    yaml = round_trip_yaml()
    yaml.indent(mapping=2, sequence=4, offset=2)
    data: dict[str, Any] = {"version": DoubleQuotedScalarString(RASA_DOMAIN_VERSION)}
    if slots:
        data["slots"] = to_yaml_nodes(slots)
    if actions:
        data["actions"] = to_yaml_nodes(actions)
    if responses:
        data["responses"] = to_yaml_nodes(responses)
    return dump(yaml, to_yaml_nodes(data))


def added_slots(plan: MergePlan) -> dict[str, dict[str, Any]]:
    """The declarations of the slots ``plan`` adds."""
    slots = contract_slots()
    return {name: slots[name] for name in plan.slots}


def added_responses(plan: MergePlan) -> dict[str, list[dict[str, Any]]]:
    """The declarations of the responses ``plan`` adds (the plugin's, then examples)."""
    responses: dict[str, list[dict[str, Any]]] = {**plugin_responses(), **EXAMPLE_RESPONSES}
    return {name: responses[name] for name in plan.responses}


def load_domain(path: Path) -> CommentedMap:
    """A domain file, round-trip loaded; an empty file is an empty domain.

    Raises:
        DomainFileError: not readable, not YAML, or not a mapping (with the line).
    """
    return load_mapping(path, "a Rasa domain")


def load_mapping(path: Path, kind: str) -> CommentedMap:
    """A YAML file of ``kind`` (``"a Rasa domain"``) whose top level is a mapping,
    round-trip loaded; an empty file (or one of comments only) is an empty mapping.

    Raises:
        DomainFileError: not readable, not YAML, or not a mapping (with the line).
    """
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DomainFileError(f"{path}: cannot be read ({error})") from None
    return parse_mapping(text, path, kind)


def parse_mapping(text: str, path: Path, kind: str) -> CommentedMap:
    """:func:`load_mapping` of a text already read (or about to be written) to ``path``.

    Raises:
        DomainFileError: not YAML, or not a mapping (with the line).
    """
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        data = round_trip_yaml().load(text)
    except MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        where = f"{path}:{mark.line + 1}" if mark is not None else str(path)
        raise DomainFileError(f"{where}: not valid YAML ({error.problem})") from None
    except YAMLError as error:
        raise DomainFileError(f"{path}: not valid YAML ({error})") from None
    if data is None:
        return CommentedMap()
    if not isinstance(data, CommentedMap):
        raise DomainFileError(f"{path}: not {kind} (a mapping of sections expected)")
    return data


@dataclass
class Declared:
    """What a domain (one file, or all files of a directory) declares already."""

    slots: dict[str, tuple[Path, Any]] = field(default_factory=dict)  # name -> file, decl.
    actions: set[str] = field(default_factory=set)
    responses: set[str] = field(default_factory=set)

    def update(self, other: Declared) -> None:
        """Add what ``other`` declares; ``other``'s slot declarations win."""
        self.slots.update(other.slots)
        self.actions |= other.actions
        self.responses |= other.responses


def declared_names(path: Path, domain: CommentedMap) -> Declared:
    """The slots, action names and response names that ``domain`` declares.

    Raises:
        DomainFileError: ``slots`` or ``responses`` is not a mapping, or ``actions`` not a
            list.
    """
    found: dict[str, Any] = {}
    for section, kind, wanted in (
        ("slots", "a mapping", dict),
        ("actions", "a list", list),
        ("responses", "a mapping", dict),
    ):
        value = domain.get(section) or wanted()
        if not isinstance(value, wanted):
            raise DomainFileError(f"{path}:{line_of(domain, section)}: `{section}` is not {kind}")
        found[section] = value
    # Rasa also accepts `- action_name: {send_domain: true}` entries.
    actions = found["actions"]
    names = {name for item in actions for name in (item if isinstance(item, dict) else [item])}
    return Declared(
        slots={name: (path, declaration) for name, declaration in found["slots"].items()},
        actions={str(name) for name in names},
        responses={str(name) for name in found["responses"]},
    )


def line_of(domain: CommentedMap, key: str) -> int:
    """The 1-based line of a top-level key."""
    line: int = domain.lc.key(key)[0]
    return line + 1


def conflict(name: str, declared: Any, wanted: dict[str, Any]) -> str | None:
    """Why a user's declaration of contract slot ``name`` cannot hold our values, if it can't.

    Their ``influence_conversation`` and extra keys are their choice; the type and the
    categorical values (in any order) are what the action server relies on.
    """
    if not isinstance(declared, dict):
        return f"slot {name!r} is not a mapping"
    if declared.get("type") != wanted["type"]:
        theirs_type = declared.get("type")
        return f"slot {name!r} has type {theirs_type!r}, the plugin sets {wanted['type']!r}"
    if wanted["type"] == "categorical":
        theirs = {str(value) for value in declared.get("values") or []}
        if theirs != set(wanted["values"]):
            return f"slot {name!r} has values {sorted(theirs)}, the plugin sets {wanted['values']}"
    return None


def classify(plan: MergePlan, declared: Declared, *, examples: bool = False) -> MergePlan:
    """Fill ``plan`` from the slots, actions and responses already declared; with
    ``examples``, the :data:`EXAMPLE_RESPONSES` the domain lacks are added too.

    Raises:
        DomainFileError: a contract slot declared differently (naming its file).
    """
    for name, wanted in contract_slots().items():
        if name not in declared.slots:
            plan.slots.append(name)
            continue
        where, declaration = declared.slots[name]
        reason = conflict(name, declaration, wanted)
        if reason is not None:
            raise DomainFileError(
                f"{where}: {reason}; change or remove it, the plugin never overwrites yours"
            )
        plan.present.append(name)
    for action in plugin_actions():
        (plan.present if action in declared.actions else plan.actions).append(action)
    responses = [*plugin_responses(), *(EXAMPLE_RESPONSES if examples else ())]
    for response in responses:
        (plan.present if response in declared.responses else plan.responses).append(response)
    return plan


def plan_file(
    path: Path, elsewhere: Declared | None = None, *, examples: bool = False
) -> tuple[MergePlan, str]:
    """What to add to one domain file, and the file's new text.

    Args:
        path: the domain file.
        elsewhere: what other files of the same domain directory declare already:
            checked the same way, never added twice.
        examples: also add the :data:`EXAMPLE_RESPONSES` no file declares.

    Raises:
        DomainFileError: unreadable, or a contract slot declared differently.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    domain = load_domain(path)
    declared = Declared()
    if elsewhere is not None:
        declared.update(elsewhere)
    declared.update(declared_names(path, domain))
    plan = classify(MergePlan(), declared, examples=examples)
    if plan.empty:
        return plan, ""

    sections = [("slots", CommentedMap), ("actions", CommentedSeq)]
    if plan.responses:
        sections.append(("responses", CommentedMap))
    for section, empty in sections:
        if not isinstance(domain.get(section), empty):
            domain[section] = empty()
    yaml = round_trip_yaml()
    # ruamel writes one indentation for the whole file: the one `rasa init` and our demo
    # domain use. Content, order, comments and quotes stay as the user wrote them.
    yaml.indent(mapping=2, sequence=4, offset=2)
    new_slots = to_yaml_nodes(added_slots(plan))
    for index, (name, declaration) in enumerate(new_slots.items()):
        domain["slots"][name] = declaration
        if index == 0:
            domain["slots"].yaml_set_comment_before_after_key(name, before=SLOTS_HEADER, indent=2)
    domain["actions"].extend(plan.actions)
    for name, declaration in to_yaml_nodes(added_responses(plan)).items():
        domain["responses"][name] = declaration
    return plan, dump(yaml, domain)


def plan_directory(directory: Path, *, examples: bool = False) -> tuple[MergePlan, Path, str]:
    """What to write to ``directory/rasa_personalize.yml``: what no domain file there has
    (with ``examples``, also the :data:`EXAMPLE_RESPONSES` none declares).

    Raises:
        DomainFileError: a domain file there is unreadable or declares a slot differently.
    """
    target = directory / DIRECTORY_FILE_NAME
    declared = Declared()
    # Rasa reads a domain directory recursively.
    for other in sorted([*directory.rglob("*.yml"), *directory.rglob("*.yaml")]):
        if other != target and other.is_file():
            declared.update(declared_names(other, load_domain(other)))
    if target.is_file():
        plan, text = plan_file(target, elsewhere=declared, examples=examples)
        return plan, target, text
    plan = classify(MergePlan(), declared, examples=examples)
    return plan, target, fragment_yaml(added_slots(plan), plan.actions, added_responses(plan))
