"""Tag rules in YAML: which fine-grained tags a customer earns, validated with line numbers.

The file (``tags.yml`` in the demo)::

    version: 1                          # optional; 1 is the only version
    tags:
      - tag: interested_in_running      # the tag's name: a-z, 0-9, _ (at most 64)
        description: optional text
        weight: 1.0                     # optional, in (0, 1]; stored with the tag
        when:                           # exactly one condition, of one of two kinds:
          count:                        # 1. how often the customer did something
            kind: view                  #    view, search, cart, purchase, chat_click, feedback
            category: running           #    optional: products of this category only
            within_days: 30             #    optional: in the last N days only
            at_least: 3                 #    the count must reach this
      - tag: premium
        when:
          feature: monetary             # 2. a customer feature (rasa_personalize.segments.features)
          gte: 1000                     #    gt, gte, lt, lte; several must all hold

Every problem in a file is reported at once, each with the file, the line, the tag and
the field, and a suggestion for a misspelt name (``did you mean 'within_days'?``), in the
same :class:`~rasa_personalize.rules.problems.Problem` format as the decision rules. Categories are
checked against the catalogue when the rules are applied (the file cannot know them).
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, TypeGuard

import numpy as np
import yaml
from numpy.typing import NDArray
from yaml.nodes import MappingNode, Node, ScalarNode, SequenceNode

from rasa_personalize.rules.conditions import show
from rasa_personalize.rules.problems import Problem, did_you_mean
from rasa_personalize.rules.yaml_source import YamlChecker, is_number, node_line, read_text_file
from rasa_personalize.segments.errors import TagRulesError
from rasa_personalize.segments.features import AFFINITY_PREFIX, BASE_FEATURES
from rasa_personalize.store.models import INTERACTION_KINDS

TOP_KEYS: Final = ("version", "tags")
RULE_KEYS: Final = ("tag", "description", "weight", "when")
WHEN_KEYS: Final = ("count", "feature")
COUNT_KEYS: Final = ("kind", "category", "within_days", "at_least")
FEATURE_OPERATORS: Final = ("gt", "gte", "lt", "lte")
TAG_NAME: Final = re.compile(r"^[a-z][a-z0-9_]{0,63}$")
RULE_SOURCE: Final = "rule"
# What people write instead of an operator name; difflib cannot guess these.
_OPERATOR_SYNONYMS: Final[Mapping[str, str]] = {
    ">": "gt", ">=": "gte", "<": "lt", "<=": "lte",
    "min": "gte", "at_least": "gte", "above": "gt", "more_than": "gt",
    "max": "lte", "at_most": "lte", "below": "lt", "less_than": "lt",
}  # fmt: skip
_COMPARE: Final = {
    "gt": np.greater,
    "gte": np.greater_equal,
    "lt": np.less,
    "lte": np.less_equal,
}


@dataclass(frozen=True)
class CountCondition:
    """The customer did ``kind`` at least ``at_least`` times (in a category, lately)."""

    kind: str
    at_least: int
    category: str | None = None
    within_days: int | None = None

    def __str__(self) -> str:
        where = f" in {self.category!r}" if self.category else ""
        when = f" within {self.within_days} days" if self.within_days else ""
        return f"at least {self.at_least} {self.kind}{where}{when}"


@dataclass(frozen=True)
class FeatureCondition:
    """A feature of the customer passes every bound, e.g. ``(("gte", 1000.0),)``."""

    feature: str
    bounds: tuple[tuple[str, float], ...]

    def holds(self, values: NDArray[np.float64]) -> NDArray[np.bool_]:
        """Where ``values`` (this feature, one per customer) pass every bound."""
        passed = np.ones(len(values), dtype=np.bool_)
        for op, bound in self.bounds:
            passed &= _COMPARE[op](values, bound)
        return passed

    def __str__(self) -> str:
        return " and ".join(f"{self.feature} {op} {bound:g}" for op, bound in self.bounds)


@dataclass(frozen=True)
class TagRule:
    """One tag and the condition that earns it."""

    tag: str
    condition: CountCondition | FeatureCondition
    weight: float = 1.0
    description: str = ""
    line: int | None = None


@dataclass(frozen=True)
class TagRules:
    """A validated tag rule file."""

    rules: tuple[TagRule, ...]
    source: str = "<string>"
    digest: str = ""

    @property
    def tags(self) -> frozenset[str]:
        """Every tag name the rules can give."""
        return frozenset(rule.tag for rule in self.rules)


def parse_tag_rules(text: str, source: str = "<string>") -> TagRules:
    """Compile tag-rule text.

    Raises:
        TagRulesError: listing every problem, each with file, line, tag and field.
    """
    rules, problems = validate_tag_rules(text, source)
    if rules is None:
        raise TagRulesError(source, problems)
    return rules


def load_tag_rules(path: Path | str) -> TagRules:
    """Read and compile the tag-rule file at ``path``.

    Raises:
        TagRulesError: the file cannot be read or has problems (all of them are listed).
    """
    text, problem = read_text_file(Path(path))
    if text is None:
        raise TagRulesError(str(path), [problem] if problem else [])
    return parse_tag_rules(text, str(path))


def load_ingest_tag_rules(path: Path | None) -> TagRules | None:
    """The tag rules to re-apply to customers with new events or imports: None when
    there is no file (tags are optional).

    Raises:
        TagRulesError: the file exists but has problems (all listed).
    """
    if path is None or not path.exists():
        return None
    return load_tag_rules(path)


def check_tag_file(path: Path | str) -> list[Problem]:
    """Every problem in the tag-rule file at ``path``; empty when it is valid."""
    text, problem = read_text_file(Path(path))
    if text is None:
        return [problem] if problem else []
    return list(validate_tag_rules(text, str(path))[1])


def validate_tag_rules(text: str, source: str) -> tuple[TagRules | None, tuple[Problem, ...]]:
    """The compiled rules and no problems, or ``None`` and every problem in file order."""
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)  # safe loader: plain data only
    except yaml.MarkedYAMLError as error:
        mark = error.problem_mark or error.context_mark
        detail = " ".join(part for part in (error.context, error.problem) if part)
        line = mark.line + 1 if mark is not None else None
        return None, (Problem(source, line, f"not valid YAML: {detail}"),)
    except yaml.YAMLError as error:
        return None, (Problem(source, None, f"not valid YAML: {error}"),)
    checker = _Checker(source)
    rules = checker.document(root)
    problems = tuple(sorted(checker.problems, key=lambda p: (p.line is None, p.line or 0)))
    if problems or rules is None:
        return None, problems
    digest = hashlib.sha256(text.encode("utf-8")).hexdigest()[:12]
    return TagRules(tuple(rules), source, digest), ()


def _is_whole(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def known_feature(name: str) -> bool:
    """Whether ``name`` can be a feature column (affinity columns depend on the catalogue)."""
    return name in BASE_FEATURES or (
        name.startswith(AFFINITY_PREFIX) and len(name) > len(AFFINITY_PREFIX)
    )


class _Checker(YamlChecker):
    """Walks the composed YAML, collecting problems and building the rules."""

    @property
    def tag(self) -> str | None:
        """The tag being checked (named in problems)."""
        return self.item

    @tag.setter
    def tag(self, name: str | None) -> None:
        self.item = name

    def entries(self, node: MappingNode, allowed: tuple[str, ...], what: str) -> dict[str, Node]:
        """Value node by key; unknown, repeated and non-text keys are reported."""
        found: dict[str, Node] = {}
        lines: dict[str, int | None] = {}
        for key_node, value_node in node.value:
            key = self.value(key_node) if isinstance(key_node, ScalarNode) else None
            if not isinstance(key, str):
                self.report(key_node, f"a key must be a name, got {show(key)}")
            elif key in found:
                self.report(key_node, f"{key!r} is given twice (first on line {lines[key]})", key)
            elif key not in allowed:
                self.report(
                    key_node,
                    f"unknown key {key!r}{did_you_mean(key, allowed)}; "
                    f"{what} has {', '.join(allowed)}",
                    key,
                )
            else:
                found[key], lines[key] = value_node, node_line(key_node)
        return found

    def document(self, root: Node | None) -> list[TagRule] | None:
        if root is None:
            self.report(None, "the file is empty; it needs a 'tags:' list")
            return None
        if not isinstance(root, MappingNode):
            self.report(root, "the file must be a mapping with a 'tags:' list")
            return None
        found = self.entries(root, TOP_KEYS, "the file")
        if "version" in found:
            version = self.value(found["version"])
            if version != 1 or isinstance(version, bool):
                self.report(found["version"], f"version must be 1, got {show(version)}")
        if "tags" not in found:
            self.report(root, "missing 'tags:' (the list of tag rules)")
            return None
        node = found["tags"]
        if not isinstance(node, SequenceNode):
            self.report(node, "'tags' must be a list: start each rule with '- tag: ...'")
            return None
        rules: list[TagRule] = []
        first: dict[str, int | None] = {}
        for index, item in enumerate(node.value, start=1):
            rule = self.rule(index, item)
            # Checked for invalid rules too: every problem is reported in one pass.
            if self.tag is not None and self.tag in first:
                self.report(
                    item, f"tag {self.tag!r} has a rule already (line {first[self.tag]})", "tag"
                )
            elif self.tag is not None:
                first[self.tag] = node_line(item)
                if rule is not None:
                    rules.append(rule)
            self.scope, self.tag = "", None
        return rules

    def rule(self, index: int, node: Node) -> TagRule | None:
        self.scope, self.tag = f"tag rule #{index}", None
        before = len(self.problems)
        if not isinstance(node, MappingNode):
            self.report(node, "each tag rule must be a mapping with 'tag' and 'when'")
            return None
        found = self.entries(node, RULE_KEYS, "a tag rule")
        tag = self.value(found["tag"]) if "tag" in found else None
        if isinstance(tag, str) and TAG_NAME.match(tag):
            self.scope, self.tag = f"tag {tag!r}", tag
        elif "tag" in found:
            self.report(
                found["tag"],
                f"'tag' must be a name of a-z, 0-9 and _ starting with a letter "
                f"(at most 64), got {show(tag)}",
                "tag",
            )
        else:
            self.report(node, "missing 'tag' (the name customers get)", "tag")
        weight: Any = 1.0
        if "weight" in found:
            weight = self.value(found["weight"])
            if not is_number(weight) or not 0.0 < weight <= 1.0:
                self.report(
                    found["weight"], f"'weight' must be a number in (0, 1], got {show(weight)}",
                    "weight",
                )  # fmt: skip
        description: Any = ""
        if "description" in found:
            description = self.value(found["description"])
            if not isinstance(description, str):
                self.report(found["description"], "'description' must be text", "description")
        condition = None
        if "when" in found:
            condition = self.when(found["when"])
        else:
            self.report(node, "missing 'when' (the condition that earns the tag)", "when")
        if self.tag is None or condition is None or len(self.problems) > before:
            return None
        return TagRule(self.tag, condition, float(weight), str(description), node_line(node))

    def when(self, node: Node) -> CountCondition | FeatureCondition | None:
        if not isinstance(node, MappingNode):
            self.report(node, "'when' must be a mapping with 'count:' or 'feature:'", "when")
            return None
        keys = {k.value for k, _ in node.value if isinstance(k, ScalarNode)}
        if {"count", "feature"} <= keys:
            self.report(node, "'when' takes one condition: 'count' or 'feature', not both", "when")
            return None
        if "feature" in keys:
            return self.feature(node)
        before = len(self.problems)
        found = self.entries(node, ("count",) if "count" in keys else WHEN_KEYS, "'when'")
        if "count" in found:
            return self.count(found["count"])
        if len(self.problems) == before:
            self.report(node, "'when' needs 'count:' or 'feature:'", "when")
        return None

    def count(self, node: Node) -> CountCondition | None:
        if not isinstance(node, MappingNode):
            self.report(node, "'count' must be a mapping with 'kind' and 'at_least'", "count")
            return None
        found = self.entries(node, COUNT_KEYS, "'count'")
        ok = True
        kind = self.value(found["kind"]) if "kind" in found else None
        if "kind" not in found:
            self.report(node, "'count' needs 'kind' (what the customer did)", "kind")
            ok = False
        elif kind not in INTERACTION_KINDS:
            hint = did_you_mean(kind, INTERACTION_KINDS) if isinstance(kind, str) else ""
            self.report(
                found["kind"],
                f"unknown kind {show(kind)}{hint}; kinds: {', '.join(INTERACTION_KINDS)}",
                "kind",
            )
            ok = False
        at_least = self.value(found["at_least"]) if "at_least" in found else None
        if "at_least" not in found:
            self.report(node, "'count' needs 'at_least' (how many times)", "at_least")
            ok = False
        elif not _is_whole(at_least) or at_least < 1:
            self.report(
                found["at_least"], f"'at_least' must be a whole number >= 1, got {show(at_least)}",
                "at_least",
            )  # fmt: skip
            ok = False
        category = self.value(found["category"]) if "category" in found else None
        if "category" in found and (not isinstance(category, str) or not category.strip()):
            self.report(
                found["category"], f"'category' must be a category name, got {show(category)}",
                "category",
            )  # fmt: skip
            ok = False
        days = self.value(found["within_days"]) if "within_days" in found else None
        if "within_days" in found and (not _is_whole(days) or days < 1):
            self.report(
                found["within_days"],
                f"'within_days' must be a whole number of days >= 1, got {show(days)}",
                "within_days",
            )
            ok = False
        if not ok or not _is_whole(at_least):
            return None
        return CountCondition(
            kind=str(kind),
            at_least=at_least,
            category=category.strip() if isinstance(category, str) else None,
            within_days=days if _is_whole(days) else None,
        )

    def feature(self, node: MappingNode) -> FeatureCondition | None:
        allowed = ("feature", *FEATURE_OPERATORS)
        bounds: list[tuple[str, float]] = []
        ok = True
        name: Any = None
        name_node: Node = node
        for key_node, value_node in node.value:
            key = self.value(key_node) if isinstance(key_node, ScalarNode) else None
            if key == "feature":
                name, name_node = self.value(value_node), value_node
                continue
            if not isinstance(key, str) or key not in allowed:
                text = str(key)
                hint = (
                    f" (did you mean {_OPERATOR_SYNONYMS[text]!r}?)"
                    if text in _OPERATOR_SYNONYMS
                    else did_you_mean(text, allowed)
                )
                self.report(
                    key_node,
                    f"unknown key {show(key)}{hint} next to 'feature'; "
                    f"bounds are {', '.join(FEATURE_OPERATORS)}",
                    text,
                )
                ok = False
                continue
            bound = self.value(value_node)
            if not is_number(bound):
                self.report(value_node, f"'{key}' needs a number, got {show(bound)}", key)
                ok = False
                continue
            bounds.append((key, float(bound)))
        if not isinstance(name, str) or not known_feature(name):
            hint = did_you_mean(name, BASE_FEATURES) if isinstance(name, str) else ""
            self.report(
                name_node,
                f"unknown feature {show(name)}{hint}; features: {', '.join(BASE_FEATURES)} "
                f"and {AFFINITY_PREFIX}<category>",
                "feature",
            )
            ok = False
        if ok and not bounds:
            self.report(
                node, f"feature {name!r} needs a bound: {', '.join(FEATURE_OPERATORS)}", "feature"
            )
            ok = False
        if not ok:
            return None
        return FeatureCondition(str(name), tuple(bounds))
