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
from rasa_personalize.rules.facts import (
    FIELD_PREFIXES,
    FieldKind,
    FieldSpec,
    closest_field,
    field_spec,
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

TOP_KEYS: Final = ("version", "defaults", "rules")
RULE_KEYS: Final = ("name", "description", "priority", "enabled", "when", "then")
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
            else:
                self.report(
                    key_node,
                    f"unknown key {key!r}{did_you_mean(key, TOP_KEYS)}; "
                    "the file has 'rules', and optionally 'defaults' and 'version'",
                )
        if not any(key == "rules" for key, _, _ in entries):
            self.report(root, "missing 'rules:' (the list of rules)")
        if self.problems or rules is None or defaults is None:
            return None
        return RuleSet(tuple(rules), defaults, self.source, digest)

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

    def outputs(self, node: Node, block: str, *, required: bool) -> dict[str, Any] | None:  # noqa: PLR0912  # one branch per output
        if not isinstance(node, MappingNode):
            self.report(node, f"'{block}' must be a mapping of outputs, e.g. 'offer_type: bundle'")
            return None
        entries = self.entries(node)
        if required and not entries:
            self.report(
                node, f"'{block}' sets nothing; give at least one of {', '.join(OUTPUT_NAMES)}"
            )
            return None
        outputs: dict[str, Any] = {}
        nodes: dict[str, Node] = {}
        before = len(self.problems)
        for key, key_node, value_node in entries:
            value = self.value(value_node)
            nodes[key] = value_node
            if key == "offer_type":
                if isinstance(value, str) and value.casefold() in OFFER_TYPES:
                    outputs[key] = value.casefold()
                else:
                    suggestion = did_you_mean(value, OFFER_TYPES) if isinstance(value, str) else ""
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
            else:
                self.report(
                    key_node,
                    f"unknown output {key!r}{did_you_mean(key, OUTPUT_NAMES)}; "
                    f"outputs are {', '.join(OUTPUT_NAMES)}",
                    key,
                )
        if len(self.problems) == before:
            self._check_offer(outputs, nodes)
        return outputs if len(self.problems) == before else None

    def _check_offer(self, outputs: dict[str, Any], nodes: dict[str, Node]) -> None:
        # The offer and its percentage are one decision: a lone or mismatched discount
        # would let a customer see "0% off" or a bundle with a stray percentage.
        offer = outputs.get("offer_type")
        discount = outputs.get("discount_pct")
        if discount is not None and offer is None:
            self.report(
                nodes["discount_pct"],
                "discount_pct needs 'offer_type: discount' next to it",
                "discount_pct",
            )
        elif offer == "discount" and not discount:
            self.report(
                nodes["offer_type"],
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
