"""``personalize domain show|add``: the plugin's part of a Rasa domain, from the slot contract.

The slots come from :data:`rasa_personalize.slots.SLOT_CONTRACT` and the actions from
:func:`rasa_personalize.plugin.plugin_action_names`, so a user's domain never drifts from
what the action server sets. ``add`` edits the user's file with ruamel.yaml's round trip:
their comments, order and quoting stay; it only appends what is missing and never changes
a slot they already declare.
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass, field
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any, Final

import typer

from rasa_personalize.cli.common import EXIT_USAGE, PANEL_SERVING, console, fail

if TYPE_CHECKING:
    from ruamel.yaml import YAML
    from ruamel.yaml.comments import CommentedMap

    from rasa_personalize.slots import SlotSpec

RASA_DOMAIN_VERSION: Final = "3.1"
# Written into a domain directory: Rasa merges every domain file it finds there.
DIRECTORY_FILE_NAME: Final = "rasa_personalize.yml"
SLOTS_HEADER: Final = "---- rasa-personalize slot contract (filled only by the action server) ----"

SUMMARY_STYLE: Final[dict[str, Any]] = {"highlight": False, "markup": False, "soft_wrap": True}

domain_app = typer.Typer(
    help="The plugin's slots and actions in your Rasa domain.",
    no_args_is_help=True,
    rich_markup_mode="markdown",
)


def register_commands(app: typer.Typer) -> None:
    """Add the ``domain`` group to ``app``."""
    app.add_typer(domain_app, name="domain", rich_help_panel=PANEL_SERVING)


class OutputFormat(str, Enum):
    """How ``domain show`` prints the fragment."""

    yaml = "yaml"
    json = "json"


class DomainFileError(Exception):
    """A domain file that cannot be read or merged; the message names the file."""


@dataclass
class MergePlan:
    """What ``add`` does to one domain: the slots and actions it adds, and what is there."""

    slots: list[str] = field(default_factory=list)
    actions: list[str] = field(default_factory=list)
    present: list[str] = field(default_factory=list)

    @property
    def empty(self) -> bool:
        """Nothing to add."""
        return not self.slots and not self.actions


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


def fragment_yaml(slots: dict[str, dict[str, Any]], actions: list[str]) -> str:
    """A domain file holding ``slots`` and ``actions`` (the ones not empty)."""
    from ruamel.yaml.scalarstring import DoubleQuotedScalarString

    yaml = round_trip_yaml()
    yaml.indent(mapping=2, sequence=4, offset=2)
    data: dict[str, Any] = {"version": DoubleQuotedScalarString(RASA_DOMAIN_VERSION)}
    if slots:
        data["slots"] = to_yaml_nodes(slots)
    if actions:
        data["actions"] = to_yaml_nodes(actions)
    return dump(yaml, to_yaml_nodes(data))


@domain_app.command("show")
def domain_show(
    output_format: Annotated[
        OutputFormat, typer.Option("--format", help="yaml (a domain file) or json.")
    ] = OutputFormat.yaml,
) -> None:
    """Print the plugin's slots and actions as a Rasa 3.x domain fragment."""
    slots, actions = contract_slots(), plugin_actions()
    if output_format is OutputFormat.json:
        document = {"version": RASA_DOMAIN_VERSION, "slots": slots, "actions": actions}
        print(json.dumps(document, indent=2))
        return
    print(fragment_yaml(slots, actions), end="")


@domain_app.command("add")
def domain_add(
    path: Annotated[
        Path,
        typer.Argument(help=f"Your domain file, or domain directory (gets {DIRECTORY_FILE_NAME})."),
    ],
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print what would be added; write nothing.")
    ] = False,
) -> None:
    """Add the missing contract slots and plugin actions to your domain; change nothing else.

    Exits 2, writing nothing, if your domain declares one of our slots with another type
    or other values.
    """
    try:
        if path.is_dir():
            plan, target, text = plan_directory(path)
        elif path.is_file():
            plan, text = plan_file(path)
            target = path
        else:
            raise DomainFileError(f"{path}: no such file or directory")
    except DomainFileError as error:
        fail(str(error), EXIT_USAGE)
    verb = "would add" if dry_run else "added"
    if dry_run and not plan.empty:
        console.print(f"{target}: {verb}:", **SUMMARY_STYLE)
        console.print(fragment_yaml(added_slots(plan), plan.actions), markup=False, end="")
    elif not plan.empty:
        target.write_text(text, encoding="utf-8")
    # One line each however long, so scripts can grep them.
    for label, names in ((f"slots {verb}", plan.slots), (f"actions {verb}", plan.actions)):
        console.print(f"{target}: {label}: {', '.join(names) or 'none'}", **SUMMARY_STYLE)
    console.print(f"already there: {', '.join(plan.present) or 'none'}", **SUMMARY_STYLE)


def added_slots(plan: MergePlan) -> dict[str, dict[str, Any]]:
    """The declarations of the slots ``plan`` adds."""
    slots = contract_slots()
    return {name: slots[name] for name in plan.slots}


def load_domain(path: Path) -> CommentedMap:
    """A domain file, round-trip loaded; an empty file is an empty domain.

    Raises:
        DomainFileError: not readable, not YAML, or not a mapping (with the line).
    """
    from ruamel.yaml.comments import CommentedMap
    from ruamel.yaml.error import MarkedYAMLError, YAMLError

    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise DomainFileError(f"{path}: cannot be read ({error})") from None
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
        raise DomainFileError(f"{path}: not a Rasa domain (a mapping of sections expected)")
    return data


def declared_names(path: Path, domain: CommentedMap) -> tuple[dict[str, Any], set[str]]:
    """The slots (name -> declaration) and action names that ``domain`` declares.

    Raises:
        DomainFileError: ``slots`` is not a mapping or ``actions`` not a list.
    """
    slots = domain.get("slots") or {}
    if not isinstance(slots, dict):
        raise DomainFileError(f"{path}:{line_of(domain, 'slots')}: `slots` is not a mapping")
    actions = domain.get("actions") or []
    if not isinstance(actions, list):
        raise DomainFileError(f"{path}:{line_of(domain, 'actions')}: `actions` is not a list")
    # Rasa also accepts `- action_name: {send_domain: true}` entries.
    names = {name for item in actions for name in (item if isinstance(item, dict) else [item])}
    return dict(slots), {str(name) for name in names}


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


def classify(plan: MergePlan, slots: dict[str, tuple[Path, Any]], actions: set[str]) -> MergePlan:
    """Fill ``plan`` from the slots (name -> file, declaration) and actions already declared.

    Raises:
        DomainFileError: a contract slot declared differently (naming its file).
    """
    for name, wanted in contract_slots().items():
        if name not in slots:
            plan.slots.append(name)
            continue
        where, declared = slots[name]
        reason = conflict(name, declared, wanted)
        if reason is not None:
            raise DomainFileError(
                f"{where}: {reason}; change or remove it, the plugin never overwrites yours"
            )
        plan.present.append(name)
    for action in plugin_actions():
        (plan.present if action in actions else plan.actions).append(action)
    return plan


def plan_file(
    path: Path, elsewhere: tuple[dict[str, tuple[Path, Any]], set[str]] = ({}, set())
) -> tuple[MergePlan, str]:
    """What to add to one domain file, and the file's new text.

    Args:
        path: the domain file.
        elsewhere: slots (name -> file, declaration) and actions that other files of the
            same domain directory declare already: checked the same way, never added twice.

    Raises:
        DomainFileError: unreadable, or a contract slot declared differently.
    """
    from ruamel.yaml.comments import CommentedMap, CommentedSeq

    domain = load_domain(path)
    slots, actions = declared_names(path, domain)
    other_slots, other_actions = elsewhere
    mine = {name: (path, declaration) for name, declaration in slots.items()}
    plan = classify(MergePlan(), {**other_slots, **mine}, actions | other_actions)
    if plan.empty:
        return plan, ""

    for section, empty in (("slots", CommentedMap), ("actions", CommentedSeq)):
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
    return plan, dump(yaml, domain)


def plan_directory(directory: Path) -> tuple[MergePlan, Path, str]:
    """What to write to ``directory/rasa_personalize.yml``: what no domain file there has.

    Raises:
        DomainFileError: a domain file there is unreadable or declares a slot differently.
    """
    target = directory / DIRECTORY_FILE_NAME
    slots: dict[str, tuple[Path, Any]] = {}
    actions: set[str] = set()
    # Rasa reads a domain directory recursively.
    for other in sorted([*directory.rglob("*.yml"), *directory.rglob("*.yaml")]):
        if other != target and other.is_file():
            found_slots, found_actions = declared_names(other, load_domain(other))
            slots.update({name: (other, found) for name, found in found_slots.items()})
            actions |= found_actions
    if target.is_file():
        plan, text = plan_file(target, elsewhere=(slots, actions))
        return plan, target, text
    plan = classify(MergePlan(), slots, actions)
    return plan, target, fragment_yaml(added_slots(plan), plan.actions)
