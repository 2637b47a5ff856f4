"""``personalize init``: add the plugin to an existing Rasa project, in one idempotent step.

What it writes, each part only when the project lacks it:

- the domain: the contract slots, the plugin's actions, the responses they utter and
  example conditional responses, merged by :mod:`rasa_personalize.cli.domain_merge` into
  ``domain.yml`` (round trip: the user's content and comments stay) or, for a domain
  directory, into a file of its own there;
- ``personalization.yml`` and ``tags.yml`` starters, which pass the same checks as a
  shop's own files (``personalize rules check``, ``personalize tag --check``);
- the ``action_endpoint`` of ``endpoints.yml``, appended as text so that every byte of
  the file stays as it was;
- ``actions/__init__.py``, only when the project has no actions package at all:
  ``rasa run actions`` stops without one to import. An existing package needs no line,
  because every rasa-sdk action server loads the plugin's actions through rasa-sdk's
  plugin hook (:mod:`rasa_sdk_plugins`).

Every file is read and planned before anything is written, so an error leaves the project
as it was; ``--dry-run`` prints the plan as one unified diff per file.
"""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Final

import typer

from rasa_personalize.cli.common import (
    EXIT_FAILED,
    EXIT_USAGE,
    PANEL_SERVING,
    SUMMARY_STYLE,
    console,
    fail,
)
from rasa_personalize.cli.domain_merge import (
    DomainFileError,
    parse_mapping,
    plan_directory,
    plan_file,
)

if TYPE_CHECKING:
    from collections.abc import Callable

    from rasa_personalize.rules.problems import Problem

CONFIG_NAMES: Final = ("config.yml", "config.yaml")
DOMAIN_NAMES: Final = ("domain.yml", "domain.yaml", "domain")
RULES_FILE: Final = "personalization.yml"
TAGS_FILE: Final = "tags.yml"
ENDPOINTS_FILE: Final = "endpoints.yml"
# Keys by which Rasa 3.6 sends a credential with its action calls.
CREDENTIAL_KEYS: Final = ("token", "headers", "basic_auth")

ACTION_ENDPOINT: Final = """\
# The action server with the rasa-personalize plugin (`personalize serve` or
# `rasa run actions`). Rasa sends the webhook token from its own environment: export the
# same PERSONALIZE_WEBHOOK_TOKEN for `rasa run` and for the action server.
action_endpoint:
  url: "http://localhost:5055/webhook"
  token: ${PERSONALIZE_WEBHOOK_TOKEN}
"""

ACTIONS_PACKAGE: Final = '''\
"""This assistant's own custom actions: rasa-sdk imports every module of this package.

The rasa-personalize actions need no line here: every rasa-sdk action server
(`personalize serve`, `rasa run actions`) loads them through rasa-sdk's plugin hook.
"""
'''

RULES_STARTER: Final = """\
# personalization.yml: which offer the assistant makes, and how it recommends.
# A start written by `personalize init`: make it yours. The action server reads it
# (PERSONALIZE_RULES_PATH, default ./personalization.yml) and picks up saved changes
# without a restart. Check it:  personalize rules check
# See why a customer gets their offer:  personalize rules explain CUSTOMER
#
# For each customer the FIRST rule whose "when" holds decides; what its "then" leaves
# out comes from "defaults", and a customer no rule fits gets exactly the defaults.
#   when:  segment (new_visitor, frequent_buyer, price_sensitive, loyal, at_risk,
#          browser), loyalty_tier (none, silver, gold, platinum), tags, purchase_count,
#          days_since_last_purchase, favorite_category, time_of_day, device, ...
#          Several lines must all hold; {gte: 4}, {between: [45, 90]}, any:, not:.
#   then:  offer_type (none, discount, free_shipping, exclusive_access, bundle),
#          discount_pct (with discount), max_price, recommendation_strategy
#          (default, cheapest_first, premium, new_arrivals)

version: 1

defaults:
  offer_type: none
  discount_pct: 0
  recommendation_strategy: default

rules:
  - name: new visitors
    description: Nobody new or unknown gets a discount; show them what is new instead.
    when:
      segment: new_visitor
    then:
      recommendation_strategy: new_arrivals

  - name: premium members
    description: Gold and platinum members get early access and premium picks.
    when:
      loyalty_tier: [gold, platinum]
    then:
      offer_type: exclusive_access
      recommendation_strategy: premium

  - name: bargain hunters
    description: Mostly buys on discount. 15% off, and affordable products first.
    when:
      segment: price_sensitive
    then:
      offer_type: discount
      discount_pct: 15
      recommendation_strategy: cheapest_first

  - name: win back lapsed customers
    when:
      segment: at_risk
    then:
      offer_type: discount
      discount_pct: 10

  - name: loyal customers
    when:
      segment: loyal
    then:
      offer_type: exclusive_access

  - name: frequent buyers
    when:
      segment: frequent_buyer
    then:
      offer_type: bundle

  - name: browsers
    when:
      segment: browser
    then:
      offer_type: free_shipping
"""

TAGS_STARTER: Final = """\
# tags.yml: fine-grained tags for your customers, shown to the dialogue in the user_tags
# slot and usable in personalization.yml ("tags: premium"). A start written by
# `personalize init`: make it yours. `personalize tag` applies the rules (ingestion
# re-applies them for customers with new events); `personalize tag --check` validates.
# Each tag has exactly one condition: a customer feature (monetary, frequency,
# recency_days, discount_share, ...) compared with gt, gte, lt, lte; or a count of
# interactions (kind: view, cart, purchase, chat_click, feedback, ...).
version: 1
tags:
  - tag: premium
    description: spent at least 1000 in total
    when:
      feature: monetary
      gte: 1000

  - tag: bargain_hunter
    description: most purchases were on discount
    weight: 0.8
    when:
      feature: discount_share
      gte: 0.6

  # Recency is capped at 365 days, the value of customers who never bought.
  - tag: lapsed_buyer
    description: bought before, but not in the last 90 days
    when:
      feature: recency_days
      gte: 90
      lt: 365

  - tag: engaged_with_assistant
    description: clicked what the assistant recommended at least 3 times in 60 days
    weight: 0.7
    when:
      count: {kind: chat_click, within_days: 60, at_least: 3}

  # Interest in one of your catalogue's categories:
  # - tag: interested_in_running
  #   when:
  #     count: {kind: view, category: running, within_days: 30, at_least: 3}
"""

NEXT_STEPS: Final = """\
Next steps (docs: "Plugging into your assistant"):
  export PERSONALIZE_SECRET_KEY=...  PERSONALIZE_WEBHOOK_TOKEN=...   (16+ characters each)
  personalize db upgrade             then import your data, or `personalize seed-demo` to try
  personalize serve                  (or `rasa run actions`), beside `rasa train && rasa run`
"""


class ProjectError(Exception):
    """The folder cannot take the plugin as it is; the message names the file."""


@dataclass(frozen=True)
class FileChange:
    """One file ``init`` creates or rewrites, and why."""

    path: Path
    before: str | None  # None: the file does not exist yet
    after: str
    summary: str

    def diff(self, project: Path) -> str:
        """A unified diff of the change, with paths relative to the project."""
        name = self.path.relative_to(project).as_posix()
        lines = difflib.unified_diff(
            with_final_newline(self.before or "").splitlines(keepends=True),
            self.after.splitlines(keepends=True),
            fromfile="/dev/null" if self.before is None else f"a/{name}",
            tofile=f"b/{name}",
        )
        return "".join(lines)


@dataclass(frozen=True)
class InitPlan:
    """What ``init`` does to one project: the files it writes, and what it leaves alone."""

    changes: tuple[FileChange, ...]
    kept: tuple[str, ...]


def with_final_newline(text: str) -> str:
    """``text`` ending in a newline (an empty text stays empty)."""
    return text if not text or text.endswith("\n") else text + "\n"


def read_text(path: Path) -> str:
    """A file's text.

    Raises:
        ProjectError: the file cannot be read.
    """
    try:
        return path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        raise ProjectError(f"{path}: cannot be read ({error})") from None


def find_domain(project: Path) -> Path:
    """The project's domain: ``domain.yml`` (or ``.yaml``) or a ``domain/`` directory.

    Raises:
        ProjectError: no config or no domain, so not a Rasa project.
    """
    if not any((project / name).is_file() for name in CONFIG_NAMES):
        raise ProjectError(
            f"{project}: not a Rasa project (no config.yml); run `rasa init` there first, "
            "or give the folder that holds your config.yml and domain.yml"
        )
    for name in DOMAIN_NAMES:
        candidate = project / name
        if candidate.is_file() or (name == "domain" and candidate.is_dir()):
            return candidate
    raise ProjectError(
        f"{project}: not a Rasa project (no domain.yml or domain/ directory beside config.yml)"
    )


def plan_domain(domain_path: Path) -> FileChange | str:
    """The domain's change, or why it needs none.

    Raises:
        DomainFileError: a domain file is unreadable or declares a contract slot otherwise.
    """
    if domain_path.is_dir():
        plan, target, text = plan_directory(domain_path, examples=True)
    else:
        plan, text = plan_file(domain_path, examples=True)
        target = domain_path
    if plan.empty:
        return f"{domain_path}: declares the plugin's slots, actions and responses already"
    before = read_text(target) if target.is_file() else None
    summary = (
        f"{len(plan.slots)} slots, {len(plan.actions)} actions and "
        f"{len(plan.responses)} responses added ({', '.join(plan.responses) or 'no responses'})"
    )
    return FileChange(target, before, text, summary)


def plan_starter(
    path: Path, starter: str, check: Callable[[Path], list[Problem]]
) -> FileChange | str:
    """A starter file, or why the project's own stays: ``check`` validates an existing
    one, so a broken file is reported now rather than when the server loads it."""
    if not path.exists():
        return FileChange(path, None, starter, "starter written")
    problems = check(path)
    if problems:
        return f"{path}: kept as it is, with {len(problems)} problem(s): {problems[0]}"
    return f"{path}: kept as it is"


def check_rules(path: Path) -> list[Problem]:
    """Problems of a decision-rule file (``personalize rules check``)."""
    from rasa_personalize.rules import check_file

    return check_file(path)


def check_tags(path: Path) -> list[Problem]:
    """Problems of a tag-rule file (``personalize tag --check``)."""
    from rasa_personalize.segments.tag_rules import check_tag_file

    return check_tag_file(path)


def plan_endpoints(path: Path) -> FileChange | str:
    """The ``action_endpoint`` appended to ``endpoints.yml`` (created if absent), or why
    it needs none.

    Raises:
        DomainFileError: the file is not YAML or not a mapping (with the line).
        ProjectError: the endpoint cannot be appended to the file's layout.
    """
    if not path.exists():
        return FileChange(path, None, ACTION_ENDPOINT, "created with the action_endpoint")
    before = read_text(path)
    endpoint = parse_mapping(before, path, "a Rasa endpoints file").get("action_endpoint")
    if endpoint is not None:
        credential = isinstance(endpoint, dict) and any(k in endpoint for k in CREDENTIAL_KEYS)
        advice = "" if credential else " (it sends no webhook token: add one, see the docs)"
        return f"{path}: action_endpoint kept as it is{advice}"
    # Appended as text, not re-dumped: every comment, quote and blank line stays.
    after = with_final_newline(before) + ("\n" if before.strip() else "") + ACTION_ENDPOINT
    try:
        appended = "action_endpoint" in parse_mapping(after, path, "a Rasa endpoints file")
    except DomainFileError:
        appended = False
    if not appended:  # a top level in flow style, `{models: ...}`, cannot take a block key
        raise ProjectError(
            f"{path}: the action_endpoint cannot be appended to this layout; add it by hand "
            '(url: "http://localhost:5055/webhook", token: ${PERSONALIZE_WEBHOOK_TOKEN})'
        )
    return FileChange(path, before, after, "action_endpoint added")


def plan_actions(project: Path) -> FileChange | str:
    """An ``actions`` package when the project has none, or why it needs nothing."""
    if (project / "actions").is_dir() or (project / "actions.py").is_file():
        return (
            f"{project / 'actions'}: nothing to add (rasa-sdk's plugin hook serves the "
            "plugin's actions beside yours)"
        )
    path = project / "actions" / "__init__.py"
    return FileChange(path, None, ACTIONS_PACKAGE, "created: rasa run actions needs a package")


def plan_project(project: Path) -> InitPlan:
    """Everything ``init`` would write to ``project``; reads, and writes nothing.

    Raises:
        ProjectError: not a Rasa project, or a file that cannot be read or extended.
        DomainFileError: a domain or endpoints file is not valid YAML, or a contract slot
            is declared with another type or other values.
    """
    if not project.is_dir():
        raise ProjectError(f"{project}: no such directory")
    domain_path = find_domain(project)
    outcomes = [
        plan_domain(domain_path),
        plan_starter(project / RULES_FILE, RULES_STARTER, check_rules),
        plan_starter(project / TAGS_FILE, TAGS_STARTER, check_tags),
        plan_endpoints(project / ENDPOINTS_FILE),
        plan_actions(project),
    ]
    return InitPlan(
        changes=tuple(o for o in outcomes if isinstance(o, FileChange)),
        kept=tuple(o for o in outcomes if isinstance(o, str)),
    )


def apply_plan(plan: InitPlan) -> None:
    """Write every planned file.

    Raises:
        ProjectError: a file cannot be written (the ones before it are).
    """
    for change in plan.changes:
        try:
            change.path.parent.mkdir(parents=True, exist_ok=True)
            change.path.write_text(change.after, encoding="utf-8")
        except OSError as error:
            raise ProjectError(f"{change.path}: cannot be written ({error.strerror})") from None


def register_commands(app: typer.Typer) -> None:
    """Add ``init`` to ``app``."""
    app.command("init", rich_help_panel=PANEL_SERVING)(init)


def init(
    project_dir: Annotated[
        Path, typer.Argument(help="Your Rasa project (the folder with config.yml).")
    ] = Path(),
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print a unified diff per file; write nothing.")
    ] = False,
) -> None:
    """Add rasa-personalize to an existing Rasa project: the domain's slots, actions and
    responses, starter personalization.yml and tags.yml, and the action_endpoint.

    Adds only what is missing and keeps your content and comments; a second run changes
    nothing. Exits 2, writing nothing, if the folder is not a Rasa project, a file is not
    valid YAML, or your domain declares one of the plugin's slots otherwise.
    """
    try:
        plan = plan_project(project_dir)
    except (ProjectError, DomainFileError) as error:
        fail(str(error), EXIT_USAGE)
    if dry_run:
        for change in plan.changes:
            typer.echo(change.diff(project_dir), nl=False)
    else:
        try:
            apply_plan(plan)
        except ProjectError as error:
            fail(str(error), EXIT_FAILED)
    verb = "would write" if dry_run else "wrote"
    for change in plan.changes:
        console.print(f"{verb} {change.path}: {change.summary}", **SUMMARY_STYLE)
    for reason in plan.kept:
        console.print(reason, **SUMMARY_STYLE)
    if not plan.changes:
        console.print(f"Nothing to do: {project_dir} is set up already.", **SUMMARY_STYLE)
    elif not dry_run:
        console.print(NEXT_STEPS, end="", **SUMMARY_STYLE)
