"""Read a rule file: YAML with line numbers, checked against the facts and the slot contract.

The YAML is composed into nodes (which keep their line) and walked by hand, so that every
message names the file, the line, the rule and the field, and every problem in the file
is reported at once rather than one per attempt. See :mod:`rasa_personalize.rules` for the schema.
"""

from __future__ import annotations

import hashlib
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Final

import yaml
from yaml.constructor import ConstructorError
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rasa_personalize.rules.conditions import (
    OPERATORS,
    AllOf,
    AnyOf,
    Compare,
    Condition,
    Not,
    Operator,
    show,
)
from rasa_personalize.rules.experiments import (
    ARM_KEYS,
    DEFAULT_MIN_EXPOSURES_PER_ARM,
    DEFAULT_REFRESH_MINUTES,
    EXPERIMENT_ALLOCATIONS,
    EXPERIMENT_GOALS,
    EXPERIMENT_KEYS,
    EXPERIMENT_STATUSES,
    MAX_MIN_EXPOSURES_PER_ARM,
    MAX_NAME_LENGTH,
    MAX_REFRESH_MINUTES,
    MAX_THOMPSON_ARMS,
    MAX_WINDOW_DAYS,
    MIN_REFRESH_MINUTES,
    THOMPSON_FLOOR,
    THOMPSON_KEYS,
    Arm,
    Experiment,
)
from rasa_personalize.rules.facts import (
    FIELD_PREFIXES,
    FieldKind,
    FieldSpec,
    closest_field,
    field_spec,
)
from rasa_personalize.rules.offers import (
    BEST,
    CANDIDATE_KEYS,
    CANDIDATE_OFFER_TYPES,
    MAX_CANDIDATES,
    MIN_CANDIDATES,
    BestOffer,
    OfferCandidate,
)
from rasa_personalize.rules.problems import Problem, RulesError, did_you_mean
from rasa_personalize.rules.ruleset import (
    OUTPUT_NAMES,
    RECOMMENDATION_STRATEGIES,
    Rule,
    RuleSet,
)
from rasa_personalize.rules.yaml_source import (
    NO_VALUE,
    YamlChecker,
    is_number,
    node_line,
    read_text_file,
)
from rasa_personalize.slots import OFFER_TYPES

# The C loader is ~10x faster; both keep line numbers on nodes.
_FAST_LOADER: Final = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

TOP_KEYS: Final = ("version", "defaults", "rules", "experiments")
# What an experiment's arm may set: the rules' outputs and the wording slot.
ARM_OUTPUT_NAMES: Final = (*OUTPUT_NAMES, "response_variant")
RULE_KEYS: Final = ("name", "description", "priority", "enabled", "when", "then")
# What goes with "offer_type: best" (rasa_personalize.rules.offers).
BEST_OFFER_KEYS: Final = ("offers", "explore")
EXPLICIT_KEYS: Final = ("field", "op", "value")
GROUP_KEYS: Final = ("all", "any", "not")

OPERATORS_BY_KIND: Final[Mapping[FieldKind, tuple[Operator, ...]]] = {
    "category": ("eq", "ne", "in", "not_in", "exists"),
    "text": ("eq", "ne", "in", "not_in", "contains", "exists"),
    "number": ("eq", "ne", "in", "not_in", "gt", "gte", "lt", "lte", "between", "exists"),
    "bool": ("eq", "ne", "exists"),
    "list": ("contains", "in", "not_in", "exists"),
    "any": OPERATORS,
}
_KIND_WORDS: Final[Mapping[FieldKind, str]] = {
    "category": "a category",
    "text": "text",
    "number": "a number",
    "bool": "true or false",
    "list": "a list",
    "any": "any value",
}
# What people write instead of an operator name; difflib cannot guess these.
_OPERATOR_SYNONYMS: Final[Mapping[str, Operator]] = {
    "=": "eq", "==": "eq", "is": "eq", "equals": "eq", "equal": "eq",
    "!=": "ne", "<>": "ne", "is_not": "ne", "not_equal": "ne", "neq": "ne",
    ">": "gt", "greater_than": "gt", "more_than": "gt", "above": "gt",
    ">=": "gte", "ge": "gte", "at_least": "gte", "min": "gte",
    "<": "lt", "less_than": "lt", "below": "lt",
    "<=": "lte", "le": "lte", "at_most": "lte", "max": "lte",
    "one_of": "in", "any_of": "in", "not in": "not_in", "notin": "not_in", "none_of": "not_in",
    "range": "between", "has": "contains", "includes": "contains", "include": "contains",
    "exist": "exists", "known": "exists", "present": "exists",
}  # fmt: skip
_YAML_BOOL_HINT: Final = " (YAML reads yes/no/on/off as true/false: put the text in quotes)"


def parse_rules(text: str, source: str = "<string>") -> RuleSet:
    """Compile rule-file text.

    Raises:
        RulesError: listing every problem found, each with file, line, rule and field.
    """
    rules, problems = validate(text, source)
    if rules is None:
        raise RulesError(source, problems)
    return rules


def load_rules(path: Path | str) -> RuleSet:
    """Read and compile the rule file at ``path``.

    Raises:
        RulesError: the file cannot be read or has problems (all of them are listed).
    """
    text, problem = read_text_file(Path(path))
    if text is None:
        raise RulesError(str(path), [problem] if problem else [])
    return parse_rules(text, str(path))


def check_file(path: Path | str) -> list[Problem]:
    """Every problem in the rule file at ``path``; empty when it is valid."""
    text, problem = read_text_file(Path(path))
    if text is None:
        return [problem] if problem else []
    return list(validate(text, str(path))[1])


def validate(text: str, source: str) -> tuple[RuleSet | None, tuple[Problem, ...]]:
    """The compiled rules and no problems, or ``None`` and every problem in file order."""
    checker = _Checker(source)
    try:
        root = _compose(text)
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        detail = " ".join(part for part in (error.context, error.problem) if part)
        line = mark.line + 1 if mark is not None else None
        return None, (Problem(source, line, f"not valid YAML: {detail}"),)
    except yaml.YAMLError as error:
        return None, (Problem(source, None, f"not valid YAML: {error}"),)
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    rules = checker.document(root, digest)
    problems = tuple(sorted(checker.problems, key=lambda p: (p.line is None, p.line or 0)))
    return (rules if not problems else None), problems


def _compose(text: str) -> Node | None:
    try:
        return yaml.compose(text, Loader=_FAST_LOADER)  # safe loaders: plain data only
    except yaml.YAMLError:
        # The pure-Python parser words its errors better (it shows the offending character):
        # parse again with it; errors are rare, speed does not matter then.
        return yaml.compose(text, Loader=yaml.SafeLoader)


class _Checker(YamlChecker):
    """Walks the composed YAML, collecting problems and building the rule set."""

    @property
    def rule_name(self) -> str | None:
        """The rule being checked (named in problems)."""
        return self.item

    @rule_name.setter
    def rule_name(self, name: str | None) -> None:
        self.item = name

    def entries(self, node: MappingNode) -> list[tuple[str, Node, Node]]:
        """(key, key node, value node) of a mapping; bad and repeated keys are reported."""
        try:
            self._constructor.flatten_mapping(node)  # resolves "<<: *anchor" merges
        except ConstructorError as error:
            self.report(node, f"cannot read this mapping: {error.problem}")
            return []
        seen: dict[str, int | None] = {}
        result: list[tuple[str, Node, Node]] = []
        for key_node, value_node in node.value:
            if not isinstance(key_node, ScalarNode):
                self.report(key_node, "a key must be a name, not a list or a mapping")
                continue
            key = self.value(key_node)
            if not isinstance(key, str):
                hint = _YAML_BOOL_HINT if isinstance(key, bool) else ""
                self.report(key_node, f"a key must be a name, got {show(key)}{hint}")
                continue
            if key in seen:
                self.report(key_node, f"{key!r} is given twice (first on line {seen[key]})")
                continue
            seen[key] = node_line(key_node)
            result.append((key, key_node, value_node))
        return result

    # -- the file ------------------------------------------------------------------------

    def document(self, root: Node | None, digest: str) -> RuleSet | None:
        if root is None:
            self.report(None, "the file is empty; it needs a 'rules:' list")
            return None
        if not isinstance(root, MappingNode):
            self.report(root, "the file must be a mapping with a 'rules:' list")
            return None
        defaults: dict[str, Any] | None = {}
        rules: list[Rule] | None = None
        experiments: list[Experiment] | None = []
        entries = self.entries(root)
        for key, key_node, value_node in entries:
            if key == "version":
                version = self.value(value_node)
                if version != 1 or isinstance(version, bool):
                    self.report(value_node, f"version must be 1, got {show(version)}")
            elif key == "defaults":
                self.scope = "defaults"
                defaults = self.outputs(value_node, "defaults", required=False)
                self.scope = ""
            elif key == "rules":
                rules = self.rule_list(value_node)
            elif key == "experiments":
                experiments = self.experiment_list(value_node)
            else:
                self.report(
                    key_node,
                    f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}; the file has "
                    "'rules', and optionally 'defaults', 'experiments' and 'version'",
                )
        if not any(key == "rules" for key, _, _ in entries):
            self.report(root, "missing 'rules:' (the list of rules)")
        if self.problems or rules is None or defaults is None or experiments is None:
            return None
        return RuleSet(tuple(rules), defaults, self.source, digest, tuple(experiments))

    def rule_list(self, node: Node) -> list[Rule] | None:
        if not isinstance(node, SequenceNode):
            self.report(node, "'rules' must be a list: start each rule with '- name: ...'")
            return None
        rules: list[Rule] = []
        first_lines: dict[str, int | None] = {}
        for index, item in enumerate(node.value, start=1):
            rule, name_node = self.rule(index, item)
            # Checked for invalid rules too: every problem is reported in one pass.
            if self.rule_name is not None and self.rule_name in first_lines:
                self.report(
                    name_node,
                    f"duplicate rule name {self.rule_name!r} (first used on line "
                    f"{first_lines[self.rule_name]})",
                )
            elif self.rule_name is not None:
                first_lines[self.rule_name] = node_line(name_node)
                if rule is not None:
                    rules.append(rule)
            self.scope, self.rule_name = "", None
        return rules

    def rule(self, index: int, node: Node) -> tuple[Rule | None, Node | None]:
        self.scope, self.rule_name = f"rule #{index}", None
        if not isinstance(node, MappingNode):
            self.report(node, "each rule must be a mapping with 'name', 'when' and 'then'")
            return None, None
        name_node = self._name_node(node)
        name = self.value(name_node) if name_node is not None else None
        if isinstance(name, str) and name.strip():
            name = name.strip()
            self.scope, self.rule_name = f"rule {name!r}", name
        elif name_node is not None:
            self.report(name_node, f"'name' must be some text, got {show(name)}")
        else:
            self.report(node, "missing 'name' (how the rule is called in logs and explain)")
        found = {key: (key_node, value_node) for key, key_node, value_node in self.entries(node)}
        for key, (key_node, _) in found.items():
            if key not in RULE_KEYS:
                self.report(
                    key_node,
                    f"unknown key {key!r}{did_you_mean(key, RULE_KEYS)}; "
                    f"a rule has {', '.join(RULE_KEYS)}",
                )
        description = self._optional(found, "description", str, "some text", "")
        priority = self._optional(found, "priority", int, "a whole number", 0)
        enabled = self._optional(found, "enabled", bool, "true or false", True)
        when: Condition | None = None
        then: dict[str, Any] | None = None
        if "when" in found:
            when = self.condition(found["when"][1])
        else:
            self.report(node, "missing 'when' (the condition)")
        if "then" in found:
            then = self.outputs(found["then"][1], "then", required=True)
        else:
            self.report(node, "missing 'then' (the outputs)")
        if not isinstance(name, str) or when is None or then is None:
            return None, name_node
        return (
            Rule(name, when, then, priority, description, enabled, node_line(node)),
            name_node,
        )

    @staticmethod
    def _name_node(node: MappingNode) -> Node | None:
        # Read before the other keys so that every problem in the rule carries its name.
        for key_node, value_node in node.value:
            if isinstance(key_node, ScalarNode) and key_node.value == "name":
                found: Node = value_node
                return found
        return None

    def _optional(
        self,
        found: Mapping[str, tuple[Node, Node]],
        key: str,
        kind: type,
        kind_words: str,
        default: Any,
    ) -> Any:
        if key not in found:
            return default
        value = self.value(found[key][1])
        # bool is an int in Python, but "priority: yes" is a mistake.
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            self.report(found[key][1], f"{key!r} must be {kind_words}, got {show(value)}")
            return default
        return value

    # -- experiments ---------------------------------------------------------------------

    def experiment_list(self, node: Node) -> list[Experiment] | None:
        if not isinstance(node, SequenceNode):
            self.report(
                node, "'experiments' must be a list: start each experiment with '- name: ...'"
            )
            return None
        experiments: list[Experiment] = []
        first_lines: dict[str, int | None] = {}
        for index, item in enumerate(node.value, start=1):
            experiment, name_node = self.experiment(index, item)
            name = self.rule_name
            if name is not None and name in first_lines:
                self.report(
                    name_node,
                    f"duplicate experiment name {name!r} (first used on line {first_lines[name]})",
                )
            elif name is not None:
                first_lines[name] = node_line(name_node)
                if experiment is not None:
                    experiments.append(experiment)
            self.scope, self.rule_name = "", None
        return experiments

    def experiment(self, index: int, node: Node) -> tuple[Experiment | None, Node | None]:
        self.scope, self.rule_name = f"experiment #{index}", None
        if not isinstance(node, MappingNode):
            self.report(
                node, "each experiment must be a mapping with 'name', 'arms', 'goal' and more"
            )
            return None, None
        name_node = self._name_node(node)
        name = self._identifier(name_node, node, "experiment")
        if name is not None:
            self.scope, self.rule_name = f"experiment {name!r}", name
        found = {key: (key_node, value_node) for key, key_node, value_node in self.entries(node)}
        for key, (key_node, _) in found.items():
            if key not in EXPERIMENT_KEYS:
                self.report(
                    key_node,
                    f"unknown key {key!r}{did_you_mean(key, EXPERIMENT_KEYS)}; "
                    f"an experiment has {', '.join(EXPERIMENT_KEYS)}",
                )
        description = self._optional(found, "description", str, "some text", "")
        status = self._choice(found, node, "status", EXPERIMENT_STATUSES)
        goal = self._choice(found, node, "goal", EXPERIMENT_GOALS)
        window_days = self._optional(found, "window_days", int, "a whole number of days", 7)
        if not 1 <= window_days <= MAX_WINDOW_DAYS:
            self.report(
                found["window_days"][1],
                f"'window_days' must be from 1 to {MAX_WINDOW_DAYS}, got {window_days}",
            )
            window_days = None
        # Without 'when' every customer is eligible, as "when: {}" cannot say it.
        when: Condition | None = AllOf((), node_line(node))
        if "when" in found:
            when = self.condition(found["when"][1])
        arms = self.arm_list(found["arms"][1]) if "arms" in found else None
        if "arms" not in found:
            self.report(node, "missing 'arms' (a control and at least one variant)")
        allocation = self.allocation(found, arms)
        if name is None or status is None or goal is None or window_days is None:
            return None, name_node
        if when is None or arms is None or allocation is None:
            return None, name_node
        experiment = Experiment(
            name,
            status,
            when,
            tuple(arms),
            goal,
            window_days,
            description,
            node_line(node),
            *allocation,
        )
        return experiment, name_node

    def allocation(
        self, found: Mapping[str, tuple[Node, Node]], arms: list[Arm] | None
    ) -> tuple[str, int, int] | None:
        """``allocation``, ``min_exposures_per_arm`` and ``refresh_minutes`` (the last two
        only with ``allocation: thompson``); None after a problem."""
        allocation = "fixed"
        if "allocation" in found:
            chosen = self._choice(
                found, found["allocation"][1], "allocation", EXPERIMENT_ALLOCATIONS
            )
            if chosen is None:
                return None
            allocation = chosen
        if allocation != "thompson":
            stray = [key for key in THOMPSON_KEYS if key in found]
            for key in stray:
                self.report(found[key][0], f"{key!r} is only for 'allocation: thompson'")
            return (
                None
                if stray
                else (allocation, DEFAULT_MIN_EXPOSURES_PER_ARM, DEFAULT_REFRESH_MINUTES)
            )
        ok = True
        if arms is not None and len(arms) > MAX_THOMPSON_ARMS:
            self.report(
                found["arms"][1],
                f"'allocation: thompson' takes at most {MAX_THOMPSON_ARMS} arms (each keeps "
                f"{THOMPSON_FLOOR:.0%} of the traffic), got {len(arms)}",
            )
            ok = False
        minimum = self._bounded(
            found,
            "min_exposures_per_arm",
            DEFAULT_MIN_EXPOSURES_PER_ARM,
            0,
            MAX_MIN_EXPOSURES_PER_ARM,
        )
        refresh = self._bounded(
            found,
            "refresh_minutes",
            DEFAULT_REFRESH_MINUTES,
            MIN_REFRESH_MINUTES,
            MAX_REFRESH_MINUTES,
        )
        if not ok or minimum is None or refresh is None:
            return None
        return allocation, minimum, refresh

    def _bounded(
        self, found: Mapping[str, tuple[Node, Node]], key: str, default: int, low: int, high: int
    ) -> int | None:
        """An optional whole number from ``low`` to ``high``; None after a problem."""
        if key not in found:
            return default
        value = self.value(found[key][1])
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            self.report(
                found[key][1],
                f"{key!r} must be a whole number from {low} to {high:,}, got {show(value)}",
            )
            return None
        return value

    def _identifier(self, name_node: Node | None, node: Node, what: str) -> str | None:
        """A name for an experiment or an arm: stored with every exposure, so short text."""
        if name_node is None:
            self.report(node, f"missing 'name' (how the {what} is called in reports)")
            return None
        name = self.value(name_node)
        if not isinstance(name, str) or not name.strip():
            self.report(name_node, f"'name' must be some text, got {show(name)}")
            return None
        name = name.strip()
        if len(name) > MAX_NAME_LENGTH or not name.isprintable():
            self.report(
                name_node,
                f"'name' must be at most {MAX_NAME_LENGTH} printable characters",
            )
            return None
        return name

    def _choice(
        self,
        found: Mapping[str, tuple[Node, Node]],
        node: Node,
        key: str,
        choices: tuple[str, ...],
    ) -> str | None:
        if key not in found:
            self.report(node, f"missing {key!r} (one of {', '.join(choices)})")
            return None
        value = self.value(found[key][1])
        if isinstance(value, str) and value.casefold() in choices:
            return value.casefold()
        suggestion = did_you_mean(value, choices) if isinstance(value, str) else ""
        self.report(
            found[key][1],
            f"unknown {key} {show(value)}{suggestion}; it is one of {', '.join(choices)}",
            key,
        )
        return None

    def arm_list(self, node: Node) -> list[Arm] | None:
        if not isinstance(node, SequenceNode) or len(node.value) < 2:
            self.report(
                node,
                "'arms' must be a list of at least two arms, the control first: "
                "'- {name: control, weight: 50}'",
            )
            return None
        arms = [self.arm(item) for item in node.value]
        names: dict[str, Node] = {}
        for arm, item in zip(arms, node.value, strict=True):
            if arm is None:
                continue
            if arm.name in names:
                self.report(item, f"duplicate arm name {arm.name!r}")
                return None
            names[arm.name] = item
        if any(arm is None for arm in arms):
            return None
        complete = [arm for arm in arms if arm is not None]
        if all(not arm.then for arm in complete):
            self.report(node, "no arm sets anything: give a variant a 'then'")
            return None
        return complete

    def arm(self, node: Node) -> Arm | None:
        if not isinstance(node, MappingNode):
            self.report(node, "each arm must be a mapping such as '{name: control, weight: 50}'")
            return None
        name = self._identifier(self._name_node(node), node, "arm")
        found = {key: (key_node, value_node) for key, key_node, value_node in self.entries(node)}
        for key, (key_node, _) in found.items():
            if key not in ARM_KEYS:
                self.report(
                    key_node,
                    f"unknown key {key!r}{did_you_mean(key, ARM_KEYS)}; "
                    f"an arm has {', '.join(ARM_KEYS)}",
                )
        weight: Any = None
        if "weight" not in found:
            self.report(node, "missing 'weight' (its share of eligible customers, e.g. 50)")
        else:
            weight = self.value(found["weight"][1])
            if not is_number(weight) or weight <= 0:
                self.report(
                    found["weight"][1], f"'weight' must be a number above 0, got {show(weight)}"
                )
                weight = None
        then: dict[str, Any] | None = {}
        if "then" in found:
            then = self.outputs(found["then"][1], "then", required=False, arm=True)
        if name is None or weight is None or then is None:
            return None
        return Arm(name, float(weight), then)

    # -- conditions ----------------------------------------------------------------------

    def condition(self, node: Node) -> Condition | None:
        if isinstance(node, SequenceNode):
            self.report(node, "a list of conditions needs 'all:' or 'any:' in front of it")
            return None
        if not isinstance(node, MappingNode):
            self.report(
                node,
                "a condition must be a mapping such as 'segment: loyal', "
                f"got {show(self.value(node))}",
            )
            return None
        entries = self.entries(node)
        if not entries:
            self.report(node, "empty condition")
            return None
        if any(key == "field" for key, _, _ in entries):
            return self.explicit(entries)
        parts: list[Condition | None] = []
        for key, key_node, value_node in entries:
            if key in ("all", "any"):
                parts.append(self.group(key, key_node, value_node))
            elif key == "not":
                inner = self.condition(value_node)
                parts.append(Not(inner, node_line(key_node)) if inner is not None else None)
            elif key in ("op", "value"):
                self.report(key_node, f"{key!r} needs a 'field' next to it")
                parts.append(None)
            else:
                parts.append(self.compact(key, key_node, value_node))
        complete = [part for part in parts if part is not None]
        if len(complete) != len(parts):
            return None
        return complete[0] if len(complete) == 1 else AllOf(tuple(complete), node_line(node))

    def group(self, key: str, key_node: Node, node: Node) -> Condition | None:
        if not isinstance(node, SequenceNode) or not node.value:
            self.report(node, f"'{key}' needs a list of conditions, each starting with '- '")
            return None
        parts = [self.condition(item) for item in node.value]
        complete = tuple(part for part in parts if part is not None)
        if len(complete) != len(parts):
            return None
        return (
            AllOf(complete, node_line(key_node))
            if key == "all"
            else AnyOf(complete, node_line(key_node))
        )

    def explicit(self, entries: list[tuple[str, Node, Node]]) -> Condition | None:
        found = {key: (key_node, value_node) for key, key_node, value_node in entries}
        extra = [key for key in found if key not in EXPLICIT_KEYS]
        for key in extra:
            self.report(
                found[key][0],
                f"unexpected key {key!r}{did_you_mean(key, EXPLICIT_KEYS)} next to 'field'; "
                "such a condition has only 'field', 'op' and 'value'",
            )
        field_node = found["field"][1]
        name = self.value(field_node)
        if not isinstance(name, str):
            self.report(field_node, f"'field' must be a field name, got {show(name)}")
            return None
        spec = self.field(name, field_node)
        op: Operator | None = "eq"  # the default when 'op' is left out
        if "op" in found:
            op = self.operator(self.value(found["op"][1]), found["op"][1], name)
        if spec is None or op is None or extra:
            return None
        value_node = found["value"][1] if "value" in found else None
        return self.compare(spec, name, op, value_node, field_node)

    def compact(  # noqa: PLR0911  # one return per shape of value
        self, name: str, key_node: Node, node: Node
    ) -> Condition | None:
        spec = self.field(name, key_node)
        if spec is None:
            return None
        if isinstance(node, MappingNode):
            # "purchase_count: {gte: 4, lt: 10}": each key is an operator, all must hold.
            entries = self.entries(node)
            if not entries:
                self.report(node, f"{name!r} needs an operator here, e.g. {{gte: 4}}", name)
                return None
            parts = []
            for op_name, op_node, value_node in entries:
                op = self.operator(op_name, op_node, name)
                parts.append(
                    self.compare(spec, name, op, value_node, op_node) if op is not None else None
                )
            complete = tuple(part for part in parts if part is not None)
            if len(complete) != len(parts):
                return None
            return complete[0] if len(complete) == 1 else AllOf(complete, node_line(key_node))
        if isinstance(node, SequenceNode):
            if spec.kind == "list":
                self.report(
                    node,
                    f"a list after {name!r} is ambiguous: write '{name}: {{in: [...]}}' for "
                    "any of them, or one 'contains' per element under 'all:'",
                    name,
                )
                return None
            return self.compare(spec, name, "in", node, key_node)
        # A single value means "is" ("contains" for a list field: "tags: premium").
        return self.compare(spec, name, "contains" if spec.kind == "list" else "eq", node, key_node)

    def field(self, name: str, node: Node) -> FieldSpec | None:
        spec = field_spec(name)
        if spec is not None:
            return spec
        if name in FIELD_PREFIXES:
            self.report(node, f"{name!r} needs a name after a dot, e.g. '{name}.running'", name)
            return None
        suggestion = closest_field(name)
        hint = f" (did you mean {suggestion!r}?)" if suggestion else ""
        self.report(node, f"unknown field {name!r}{hint}", name)
        return None

    def operator(self, raw: Any, node: Node, field: str) -> Operator | None:
        for operator in OPERATORS:
            if raw == operator:
                return operator
        if isinstance(raw, str):
            synonym = _OPERATOR_SYNONYMS.get(raw.strip().casefold())
            hint = f" (did you mean {synonym!r}?)" if synonym else did_you_mean(raw, OPERATORS)
        else:
            hint = ""
        self.report(
            node,
            f"unknown operator {show(raw)} for {field!r}{hint}; operators: {', '.join(OPERATORS)}",
            field,
        )
        return None

    def compare(  # noqa: PLR0911, PLR0912  # one branch per operator family
        self, spec: FieldSpec, name: str, op: Operator, node: Node | None, anchor: Node
    ) -> Compare | None:
        allowed = OPERATORS_BY_KIND[spec.kind]
        if op not in allowed:
            self.report(
                anchor,
                f"{name!r} is {_KIND_WORDS[spec.kind]} and cannot use '{op}'; "
                f"it can use {', '.join(allowed)}",
                name,
            )
            return None
        line = node_line(anchor)
        if node is None:
            if op == "exists":
                return Compare(name, op, True, line)
            self.report(anchor, f"'{op}' on {name!r} needs a 'value'", name)
            return None
        value = self.value(node)
        if value is NO_VALUE:
            return None
        if op == "exists":
            if not isinstance(value, bool):
                self.report(node, f"'exists' takes true or false, got {show(value)}", name)
                return None
            return Compare(name, op, value, line)
        if op in ("in", "not_in"):
            if not isinstance(value, list) or not value:
                self.report(
                    node, f"'{op}' on {name!r} needs a list such as [a, b], got {show(value)}", name
                )
                return None
            items = node.value if isinstance(node, SequenceNode) else []
            checks = [self.element(spec, name, op, item, self.value(item)) for item in items]
            return Compare(name, op, tuple(value), line) if all(checks) else None
        if op == "between":
            if not (
                isinstance(value, list) and len(value) == 2 and all(is_number(v) for v in value)
            ):
                self.report(
                    node,
                    f"'between' on {name!r} needs [low, high] with two numbers, got {show(value)}",
                    name,
                )
                return None
            if value[0] > value[1]:
                self.report(
                    node, f"'between' on {name!r} needs low <= high, got {show(value)}", name
                )
                return None
            return Compare(name, op, (value[0], value[1]), line)
        if op in ("gt", "gte", "lt", "lte"):
            if not is_number(value):
                self.report(node, f"'{op}' on {name!r} needs a number, got {show(value)}", name)
                return None
            return Compare(name, op, value, line)
        if not self.element(spec, name, op, node, value):
            return None
        return Compare(name, op, value, line)

    def element(  # noqa: PLR0911  # one return per field kind
        self, spec: FieldSpec, name: str, op: Operator, node: Node, value: Any
    ) -> bool:
        """Whether ``value`` is a single value that field ``name`` can hold (else reported)."""
        if value is NO_VALUE:
            return False
        if value is None:
            self.report(
                node,
                f"'{op}' on {name!r} needs a value; to test for an unknown value write "
                f"'{name}: {{exists: false}}'",
                name,
            )
            return False
        if isinstance(value, list | dict):
            self.report(node, f"'{op}' on {name!r} needs a single value, got {show(value)}", name)
            return False
        hint = _YAML_BOOL_HINT if isinstance(value, bool) else " (put it in quotes)"
        if spec.kind == "category":
            if not isinstance(value, str) or value.casefold() not in spec.values:
                suggestion = did_you_mean(value, spec.values) if isinstance(value, str) else ""
                self.report(
                    node,
                    f"unknown {name} {show(value)}{suggestion}; "
                    f"it is one of {', '.join(spec.values)}",
                    name,
                )
                return False
            return True
        if spec.kind in ("text", "list"):
            if not isinstance(value, str):
                self.report(node, f"{name!r} holds text, got {show(value)}{hint}", name)
                return False
            return True
        if spec.kind == "number":
            if not is_number(value):
                self.report(node, f"{name!r} holds a number, got {show(value)}", name)
                return False
            return True
        if spec.kind == "bool":
            if not isinstance(value, bool):
                self.report(node, f"{name!r} holds true or false, got {show(value)}", name)
                return False
            return True
        if not (isinstance(value, str | bool) or is_number(value)):
            self.report(
                node, f"{name!r} needs text, a number or true/false, got {show(value)}", name
            )
            return False
        return True

    # -- outputs -------------------------------------------------------------------------

    def outputs(  # noqa: PLR0912  # one branch per output
        self, node: Node, block: str, *, required: bool, arm: bool = False
    ) -> dict[str, Any] | None:
        """A ``then`` or ``defaults`` block; with ``arm``, an experiment arm's ``then``
        (which may also set ``response_variant``, and ``discount_pct`` on its own)."""
        names = ARM_OUTPUT_NAMES if arm else OUTPUT_NAMES
        if not isinstance(node, MappingNode):
            self.report(node, f"'{block}' must be a mapping of outputs, e.g. 'offer_type: bundle'")
            return None
        entries = self.entries(node)
        if required and not entries:
            self.report(node, f"'{block}' sets nothing; give at least one of {', '.join(names)}")
            return None
        outputs: dict[str, Any] = {}
        nodes: dict[str, Node] = {}
        before = len(self.problems)
        for key, key_node, value_node in entries:
            value = self.value(value_node)
            nodes[key] = value_node
            if key == "offer_type":
                if isinstance(value, str) and value.casefold() in (*OFFER_TYPES, BEST):
                    outputs[key] = value.casefold()
                else:
                    suggestion = (
                        did_you_mean(value, (*OFFER_TYPES, BEST)) if isinstance(value, str) else ""
                    )
                    self.report(
                        value_node,
                        f"unknown offer_type {show(value)}{suggestion}; "
                        f"it is one of {', '.join(OFFER_TYPES)}",
                        key,
                    )
            elif key == "discount_pct":
                if is_number(value) and 0 <= value <= 100:
                    outputs[key] = value
                else:
                    self.report(
                        value_node,
                        f"discount_pct must be a number from 0 to 100, got {show(value)}",
                        key,
                    )
            elif key == "max_price":
                if value is None or (is_number(value) and value > 0):
                    outputs[key] = value
                else:
                    self.report(
                        value_node,
                        "max_price must be a price above 0 (or null for no cap), "
                        f"got {show(value)}",
                        key,
                    )
            elif key == "recommendation_strategy":
                if isinstance(value, str) and value.casefold() in RECOMMENDATION_STRATEGIES:
                    outputs[key] = value.casefold()
                else:
                    suggestion = (
                        did_you_mean(value, RECOMMENDATION_STRATEGIES)
                        if isinstance(value, str)
                        else ""
                    )
                    self.report(
                        value_node,
                        f"unknown recommendation_strategy {show(value)}{suggestion}; "
                        f"it is one of {', '.join(RECOMMENDATION_STRATEGIES)}",
                        key,
                    )
            elif key == "response_variant" and arm:
                if isinstance(value, str) and value.strip() and len(value) <= MAX_NAME_LENGTH:
                    outputs[key] = value.strip()
                else:
                    self.report(
                        value_node,
                        f"response_variant must be text of 1 to {MAX_NAME_LENGTH} characters, "
                        f"got {show(value)}",
                        key,
                    )
            elif key in BEST_OFFER_KEYS:
                self.best_offer_part(key, value_node, value, outputs)
            else:
                self.report(
                    key_node,
                    f"unknown output {key!r}{did_you_mean(key, (*names, *BEST_OFFER_KEYS))}; "
                    f"outputs are {', '.join(names)}",
                    key,
                )
        if len(self.problems) == before:
            if arm and "discount_pct" in outputs and "offer_type" not in outputs:
                # An arm's discount on its own is a discount offer of that size.
                self._check_offer({**outputs, "offer_type": "discount"}, nodes)
            else:
                self._check_offer(outputs, nodes)
        if len(self.problems) == before and "offers" in outputs:
            outputs["offers"] = BestOffer(outputs["offers"], outputs.pop("explore", 0.0))
        return outputs if len(self.problems) == before else None

    def best_offer_part(self, key: str, node: Node, value: Any, outputs: dict[str, Any]) -> None:
        """``offers`` (the candidates) or ``explore`` (a share) of ``offer_type: best``."""
        if key == "offers":
            candidates = self.offer_candidates(node)
            if candidates is not None:
                outputs[key] = candidates
        elif is_number(value) and 0 <= value <= 1:
            outputs[key] = float(value)
        else:
            self.report(
                node,
                "explore must be a share from 0 to 1 (0.1: one customer in ten), "
                f"got {show(value)}",
                key,
            )

    def offer_candidates(self, node: Node) -> tuple[OfferCandidate, ...] | None:
        """The candidates of ``offer_type: best``, the fallback first."""
        if not isinstance(node, SequenceNode) or not (
            MIN_CANDIDATES <= len(node.value) <= MAX_CANDIDATES
        ):
            self.report(
                node,
                f"'offers' must be a list of {MIN_CANDIDATES} to {MAX_CANDIDATES} candidates, "
                "the fallback first, each like '- {offer_type: bundle, value: 5}'",
                "offers",
            )
            return None
        candidates = [self.offer_candidate(item) for item in node.value]
        first_lines: dict[str, int | None] = {}
        for candidate, item in zip(candidates, node.value, strict=True):
            if candidate is None:
                continue
            if candidate.label in first_lines:
                self.report(
                    item,
                    f"candidate {candidate.label!r} is listed twice "
                    f"(first on line {first_lines[candidate.label]})",
                    "offers",
                )
                return None
            first_lines[candidate.label] = node_line(item)
        complete = tuple(candidate for candidate in candidates if candidate is not None)
        return complete if len(complete) == len(candidates) else None

    def offer_candidate(self, node: Node) -> OfferCandidate | None:
        """One candidate: ``{offer_type: ..., discount_pct: ..., value: ...}``."""
        if not isinstance(node, MappingNode):
            self.report(
                node,
                "each candidate must be a mapping such as '{offer_type: bundle, value: 5}'",
                "offers",
            )
            return None
        before = len(self.problems)
        found = {key: (key_node, value_node) for key, key_node, value_node in self.entries(node)}
        for key, (key_node, _) in found.items():
            if key not in CANDIDATE_KEYS:
                self.report(
                    key_node,
                    f"unknown key {key!r}{did_you_mean(key, CANDIDATE_KEYS)}; "
                    f"a candidate has {', '.join(CANDIDATE_KEYS)}",
                    "offers",
                )
        offer_type = self._candidate_offer_type(found, node)
        discount: float | None = None
        if "discount_pct" in found:
            raw = self.value(found["discount_pct"][1])
            if is_number(raw) and 0 <= raw <= 100:
                discount = raw  # as written, for messages
            else:
                self.report(
                    found["discount_pct"][1],
                    f"discount_pct must be a number from 0 to 100, got {show(raw)}",
                    "discount_pct",
                )
        value: float | None = None
        if "value" not in found:
            self.report(
                node,
                "a candidate needs 'value': what an accepted offer is worth to the shop "
                "(a number above 0)",
                "offers",
            )
        else:
            raw = self.value(found["value"][1])
            if is_number(raw) and raw > 0:
                value = float(raw)
            else:
                self.report(
                    found["value"][1],
                    "'value' must be a number above 0 (what an accepted offer is worth), "
                    f"got {show(raw)}",
                    "offers",
                )
        if len(self.problems) != before or offer_type is None or value is None:
            return None
        # The same pairing as a rule's offer: a discount needs its size, nothing else has one.
        offer = {"offer_type": offer_type, "discount_pct": discount}
        self._check_offer(
            {name: part for name, part in offer.items() if part is not None},
            {name: found[name][1] for name in ("offer_type", "discount_pct") if name in found},
        )
        if len(self.problems) != before:
            return None
        return OfferCandidate(offer_type, float(discount or 0.0), value)

    def _candidate_offer_type(
        self, found: Mapping[str, tuple[Node, Node]], node: Node
    ) -> str | None:
        choices = ", ".join(CANDIDATE_OFFER_TYPES)
        if "offer_type" not in found:
            self.report(node, f"a candidate needs 'offer_type' (one of {choices})", "offers")
            return None
        raw = self.value(found["offer_type"][1])
        if isinstance(raw, str) and raw.casefold() in CANDIDATE_OFFER_TYPES:
            return raw.casefold()
        suggestion = did_you_mean(raw, CANDIDATE_OFFER_TYPES) if isinstance(raw, str) else ""
        self.report(
            found["offer_type"][1],
            f"a candidate's offer_type is one of {choices}, got {show(raw)}{suggestion}",
            "offer_type",
        )
        return None

    def _check_offer(self, outputs: dict[str, Any], nodes: dict[str, Node]) -> None:
        # The offer and its percentage are one decision: a lone or mismatched discount
        # would let a customer see "0% off" or a bundle with a stray percentage.
        offer = outputs.get("offer_type")
        if offer == BEST or any(key in outputs for key in BEST_OFFER_KEYS):
            self._check_best_offer(outputs, nodes)
            return
        discount = outputs.get("discount_pct")
        if discount is not None and offer is None:
            self.report(
                nodes["discount_pct"],
                "discount_pct needs 'offer_type: discount' next to it",
                "discount_pct",
            )
        elif offer == "discount" and not discount:
            self.report(
                # An arm's lone "discount_pct: 0" means a discount offer without the key.
                nodes["offer_type"] if "offer_type" in nodes else nodes["discount_pct"],
                "offer_type 'discount' needs a discount_pct above 0",
                "discount_pct",
            )
        elif discount and offer != "discount":
            self.report(
                nodes["discount_pct"],
                f"discount_pct {show(discount)} only goes with offer_type 'discount', "
                f"not {offer!r}",
                "discount_pct",
            )

    def _check_best_offer(self, outputs: dict[str, Any], nodes: dict[str, Node]) -> None:
        # "best" chooses among its candidates, each with its own discount: a percentage
        # beside it, or candidates without it, would say two things at once.
        if outputs.get("offer_type") != BEST:
            for key in BEST_OFFER_KEYS:
                if key in nodes:
                    self.report(nodes[key], f"'{key}' needs 'offer_type: best' next to it", key)
            return
        if "offers" not in nodes:
            self.report(
                nodes["offer_type"],
                "offer_type 'best' needs 'offers': the candidates to choose from, the "
                "fallback first, e.g. '- {offer_type: bundle, value: 5}'",
                "offers",
            )
        if "discount_pct" in nodes:
            self.report(
                nodes["discount_pct"],
                "discount_pct goes inside a candidate of 'offers' with offer_type 'best'",
                "discount_pct",
            )
