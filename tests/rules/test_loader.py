"""Loading rule files: the forms of a condition, and precise messages for every mistake."""

from __future__ import annotations

from pathlib import Path
from textwrap import dedent

import pytest

from rasa_personalize.errors import ConfigurationError
from rasa_personalize.rules.conditions import AllOf, AnyOf, Compare, Not
from rasa_personalize.rules.loader import check_file, load_rules, parse_rules, validate
from rasa_personalize.rules.problems import Problem, RulesError


def rules_text(body: str) -> str:
    return dedent(body).lstrip("\n")


def messages(text: str, source: str = "personalization.yml") -> list[str]:
    rules, problems = validate(rules_text(text), source)
    assert rules is None
    return [str(problem) for problem in problems]


def only_condition(when: str) -> object:
    text = f"rules:\n  - name: r\n    when: {when}\n    then: {{offer_type: bundle}}\n"
    return parse_rules(text).rules[0].when


# -- the accepted forms ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        # A scalar after a field name means eq.
        ("{segment: loyal}", Compare("segment", "eq", "loyal", 3)),
        # A list after a field name means in.
        (
            "{loyalty_tier: [gold, platinum]}",
            Compare("loyalty_tier", "in", ("gold", "platinum"), 3),
        ),
        # A scalar after a list field means contains.
        ("{tags: vip}", Compare("tags", "contains", "vip", 3)),
        # Operators as keys.
        ("{purchase_count: {gte: 4}}", Compare("purchase_count", "gte", 4, 3)),
        # Several operators as keys: all must hold.
        (
            "{total_spent: {gte: 100, lt: 500}}",
            AllOf((Compare("total_spent", "gte", 100, 3), Compare("total_spent", "lt", 500, 3)), 3),
        ),
        # Several fields in one mapping: all must hold.
        (
            "{segment: browser, device: mobile}",
            AllOf(
                (Compare("segment", "eq", "browser", 3), Compare("device", "eq", "mobile", 3)), 3
            ),
        ),
        # The explicit form.
        ("{field: hour, op: between, value: [18, 22]}", Compare("hour", "between", (18, 22), 3)),
        # The explicit form without op means eq.
        ("{field: weekday, value: sunday}", Compare("weekday", "eq", "sunday", 3)),
        # exists needs no value.
        ("{field: favorite_category, op: exists}", Compare("favorite_category", "exists", True, 3)),
        # A prefixed field.
        ("{attributes.staff: true}", Compare("attributes.staff", "eq", True, 3)),
        # any and not.
        (
            "{any: [{is_weekend: true}, {not: {hour: {lt: 18}}}]}",
            AnyOf((Compare("is_weekend", "eq", True, 3), Not(Compare("hour", "lt", 18, 3), 3)), 3),
        ),
    ],
)
def test_condition_forms(when: str, expected: object) -> None:
    """Compact and explicit forms compile to the documented condition."""
    assert only_condition(when) == expected


def test_a_full_rule_with_every_key() -> None:
    """name, description, priority, enabled, when and then are all read."""
    rules = parse_rules(
        rules_text(
            """
            version: 1
            defaults: {offer_type: none, recommendation_strategy: default}
            rules:
              - name: bargain hunters
                description: Mostly buys on discount.
                priority: 5
                enabled: false
                when: {segment: price_sensitive}
                then:
                  offer_type: Discount
                  discount_pct: 15
                  max_price: 60
                  recommendation_strategy: cheapest_first
            """
        ),
        "demo.yml",
    )
    (rule,) = rules.rules
    assert (rule.name, rule.description, rule.priority, rule.enabled, rule.line) == (
        "bargain hunters",
        "Mostly buys on discount.",
        5,
        False,
        4,
    )
    assert rule.then == {
        "offer_type": "discount",
        "discount_pct": 15,
        "max_price": 60,
        "recommendation_strategy": "cheapest_first",
    }
    assert rules.source == "demo.yml"
    assert len(rules.digest) == 12


def test_yaml_anchors_and_merges_work() -> None:
    """Authors may reuse a block with an anchor and a merge key."""
    rules = parse_rules(
        rules_text(
            """
            rules:
              - name: a
                when: &weekend {is_weekend: true}
                then: &bundle {offer_type: bundle}
              - name: b
                when: *weekend
                then: {<<: *bundle, recommendation_strategy: premium}
            """
        )
    )
    assert rules.rules[1].when == Compare("is_weekend", "eq", True, 3)
    assert rules.rules[1].then == {"offer_type": "bundle", "recommendation_strategy": "premium"}


# -- the messages ------------------------------------------------------------------------


def test_typo_in_a_field_names_file_line_rule_and_suggestion() -> None:
    """The `rules check` message of docs/segments-and-rules.md: file:line, rule, field, hint."""
    assert messages(
        """
        # Offers.
        rules:
          - name: bargain discount
            when:
              segmnet: price_sensitive
            then: {offer_type: discount, discount_pct: 15}
        """
    ) == [
        "personalization.yml:5: rule 'bargain discount': unknown field 'segmnet' "
        "(did you mean 'segment'?)"
    ]


def test_every_problem_is_reported_at_once_in_file_order() -> None:
    """One pass finds them all: several per rule, across rules, in the defaults too."""
    assert messages(
        """
        defaults: {offer_type: nothing}
        rules:
          - name: bargain discount
            when:
              segment: price_sensitve
              purchase_count: {greater_than: 3}
            then: {offer_type: discount, discount_pct: 150}
          - name: weekend
            when: {field: weekday, op: in, value: saturday}
            then: {offer_typ: bundle}
          - name: bargain discount
            when: {hour: {between: [22, 6]}, age: {gt: old}}
            then: {offer_type: bundle, discount_pct: 5}
        """
    ) == [
        "personalization.yml:1: defaults: unknown offer_type 'nothing'; "
        "it is one of discount, free_shipping, exclusive_access, bundle, none",
        "personalization.yml:5: rule 'bargain discount': unknown segment 'price_sensitve' "
        "(did you mean 'price_sensitive'?); it is one of new_visitor, frequent_buyer, "
        "price_sensitive, loyal, at_risk, browser",
        "personalization.yml:6: rule 'bargain discount': unknown operator 'greater_than' for "
        "'purchase_count' (did you mean 'gt'?); operators: eq, ne, in, not_in, gt, gte, lt, "
        "lte, between, contains, exists",
        "personalization.yml:7: rule 'bargain discount': discount_pct must be a number from "
        "0 to 100, got 150",
        "personalization.yml:9: rule 'weekend': 'in' on 'weekday' needs a list such as [a, b], "
        "got 'saturday'",
        "personalization.yml:10: rule 'weekend': unknown output 'offer_typ' (did you mean "
        "'offer_type'?); outputs are offer_type, discount_pct, max_price, "
        "recommendation_strategy",
        "personalization.yml:11: rule 'bargain discount': duplicate rule name "
        "'bargain discount' (first used on line 3)",
        "personalization.yml:12: rule 'bargain discount': 'between' on 'hour' needs "
        "low <= high, got [22, 6]",
        "personalization.yml:12: rule 'bargain discount': 'gt' on 'age' needs a number, got 'old'",
        "personalization.yml:13: rule 'bargain discount': discount_pct 5 only goes with "
        "offer_type 'discount', not 'bundle'",
    ]


@pytest.mark.parametrize(
    ("rule", "message"),
    [
        # A prefixed family needs a key.
        (
            "when: {attributes: vip}\n    then: {offer_type: bundle}",
            "'attributes' needs a name after a dot, e.g. 'attributes.running'",
        ),
        # A typo in the prefix keeps the key.
        (
            "when: {atributes.vip: true}\n    then: {offer_type: bundle}",
            "unknown field 'atributes.vip' (did you mean 'attributes.vip'?)",
        ),
        # No close field at all: no suggestion.
        ("when: {zzz: 1}\n    then: {offer_type: bundle}", "unknown field 'zzz'"),
        # An operator the field's kind does not support.
        (
            "when: {segment: {gt: 3}}\n    then: {offer_type: bundle}",
            "'segment' is a category and cannot use 'gt'; it can use eq, ne, in, not_in, exists",
        ),
        # Text where a number is needed.
        (
            "when: {purchase_count: many}\n    then: {offer_type: bundle}",
            "'purchase_count' holds a number, got 'many'",
        ),
        # YAML reads NO as false: a hint to quote it.
        (
            "when: {country: NO}\n    then: {offer_type: bundle}",
            "'country' holds text, got false (YAML reads yes/no/on/off as true/false: put the "
            "text in quotes)",
        ),
        # A number where text is needed.
        (
            "when: {city: 1234}\n    then: {offer_type: bundle}",
            "'city' holds text, got 1234 (put it in quotes)",
        ),
        # A categorical value of another field.
        (
            "when: {time_of_day: saturday}\n    then: {offer_type: bundle}",
            "unknown time_of_day 'saturday'; it is one of morning, afternoon, evening, night",
        ),
        # weekday values are checked too.
        (
            "when: {weekday: [monday, funday]}\n    then: {offer_type: bundle}",
            "unknown weekday 'funday' (did you mean 'sunday'?); it is one of monday, tuesday, "
            "wednesday, thursday, friday, saturday, sunday",
        ),
        # A list after a list field is ambiguous.
        (
            "when: {tags: [a, b]}\n    then: {offer_type: bundle}",
            "a list after 'tags' is ambiguous: write 'tags: {in: [...]}' for any of them, or one "
            "'contains' per element under 'all:'",
        ),
        # An empty value.
        (
            "when: {country: }\n    then: {offer_type: bundle}",
            "'eq' on 'country' needs a value; to test for an unknown value write 'country: "
            "{exists: false}'",
        ),
        # between with one number.
        (
            "when: {hour: {between: [3]}}\n    then: {offer_type: bundle}",
            "'between' on 'hour' needs [low, high] with two numbers, got [3]",
        ),
        # exists takes a bool.
        (
            "when: {city: {exists: maybe}}\n    then: {offer_type: bundle}",
            "'exists' takes true or false, got 'maybe'",
        ),
        # A list of conditions without all/any.
        (
            "when: [{segment: loyal}]\n    then: {offer_type: bundle}",
            "a list of conditions needs 'all:' or 'any:' in front of it",
        ),
        # all with no list.
        (
            "when: {all: {segment: loyal}}\n    then: {offer_type: bundle}",
            "'all' needs a list of conditions, each starting with '- '",
        ),
        # An empty condition.
        ("when: {}\n    then: {offer_type: bundle}", "empty condition"),
        # op without field.
        ("when: {op: eq}\n    then: {offer_type: bundle}", "'op' needs a 'field' next to it"),
        # A stray key in the explicit form.
        (
            "when: {field: hour, op: gt, valeu: 3}\n    then: {offer_type: bundle}",
            "unexpected key 'valeu' (did you mean 'value'?) next to 'field'; such a condition has "
            "only 'field', 'op' and 'value'",
        ),
        # A comparison without value.
        (
            "when: {field: hour, op: gt}\n    then: {offer_type: bundle}",
            "'gt' on 'hour' needs a 'value'",
        ),
        # A symbol for an operator.
        (
            "when: {hour: {'>=': 18}}\n    then: {offer_type: bundle}",
            "unknown operator '>=' for 'hour' (did you mean 'gte'?); operators: eq, ne, in, "
            "not_in, gt, gte, lt, lte, between, contains, exists",
        ),
        # A discount without percentage.
        (
            "when: {segment: loyal}\n    then: {offer_type: discount}",
            "offer_type 'discount' needs a discount_pct above 0",
        ),
        # A percentage without offer.
        (
            "when: {segment: loyal}\n    then: {discount_pct: 10}",
            "discount_pct needs 'offer_type: discount' next to it",
        ),
        # A negative price cap.
        (
            "when: {segment: loyal}\n    then: {offer_type: bundle, max_price: -5}",
            "max_price must be a price above 0 (or null for no cap), got -5",
        ),
        # An unknown strategy.
        (
            "when: {segment: loyal}\n    then: {recommendation_strategy: cheapest}",
            "unknown recommendation_strategy 'cheapest' (did you mean 'cheapest_first'?); it is "
            "one of default, cheapest_first, premium, new_arrivals, bought_together",
        ),
        # then with nothing.
        (
            "when: {segment: loyal}\n    then: {}",
            "'then' sets nothing; give at least one of offer_type, discount_pct, max_price, "
            "recommendation_strategy",
        ),
        # A misspelt rule key (the 'missing then' message comes with it, tested below).
        (
            "when: {segment: loyal}\n    thne: {offer_type: bundle}",
            "unknown key 'thne' (did you mean 'then'?); a rule has name, description, priority, "
            "enabled, when, then",
        ),
        # priority must be whole.
        (
            "priority: high\n    when: {segment: loyal}\n    then: {offer_type: bundle}",
            "'priority' must be a whole number, got 'high'",
        ),
        # priority: true is no number.
        (
            "priority: yes\n    when: {segment: loyal}\n    then: {offer_type: bundle}",
            "'priority' must be a whole number, got true",
        ),
        # A key given twice (YAML would keep the last one silently).
        (
            "when: {segment: loyal, segment: browser}\n    then: {offer_type: bundle}",
            "'segment' is given twice (first on line 3)",
        ),
    ],
)
def test_rule_mistakes(rule: str, message: str) -> None:
    """Each mistake gets one precise message under the rule's name and line."""
    text = f"rules:\n  - name: r\n    {rule}\n"
    problems = validate(text, "f.yml")[1]
    found = [str(problem) for problem in problems if problem.message == message]
    assert found == [f"f.yml:{problems[-1].line}: rule 'r': {message}"]
    assert len(problems) == (2 if "thne" in rule else 1)


def test_problem_fields_name_the_rule_and_the_field() -> None:
    """Problems are data too: the CLI can show the rule and field columns."""
    (problem,) = validate(
        "rules:\n- name: r\n  when: {segmnet: loyal}\n  then: {offer_type: none}\n", "f.yml"
    )[1]
    assert problem == Problem(
        "f.yml",
        3,
        "unknown field 'segmnet' (did you mean 'segment'?)",
        "rule 'r'",
        "r",
        "segmnet",
    )


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # An empty file.
        ("", "f.yml: the file is empty; it needs a 'rules:' list"),
        # Not a mapping.
        ("- a\n- b\n", "f.yml:1: the file must be a mapping with a 'rules:' list"),
        # No rules key; a typo for it is suggested.
        (
            "rule: []\n",
            "f.yml:1: unknown key 'rule' (did you mean 'rules'?); the file has 'rules', and "
            "optionally 'defaults', 'experiments' and 'version'",
        ),
        # rules must be a list.
        (
            "rules: {name: x}\n",
            "f.yml:1: 'rules' must be a list: start each rule with '- name: ...'",
        ),
        # An unknown version.
        ("version: 2\nrules: []\n", "f.yml:1: version must be 1, got 2"),
        # Broken YAML: the line of the error.
        (
            "rules:\n  - name: a\n    when: {segment: loyal\n",
            "f.yml:4: not valid YAML: while parsing a flow mapping expected ',' or '}', but got "
            "'<stream end>'",
        ),
        # A tab where YAML wants spaces.
        (
            "rules:\n\t- name: a\n",
            "f.yml:2: not valid YAML: while scanning for the next token found character '\\t' "
            "that cannot start any token",
        ),
        # A rule that is not a mapping.
        (
            "rules:\n  - just text\n",
            "f.yml:2: rule #1: each rule must be a mapping with 'name', 'when' and 'then'",
        ),
        # A rule without name, when or then.
        (
            "rules:\n  - description: x\n",
            "f.yml:2: rule #1: missing 'name' (how the rule is called in logs and explain)",
        ),
    ],
)
def test_file_mistakes(text: str, message: str) -> None:
    """Mistakes about the file as a whole say so, with a line when there is one."""
    problems = validate(text, "f.yml")[1]
    assert str(problems[0]) == message


def test_a_rule_without_when_and_then_gets_both_messages() -> None:
    """Missing parts are each named."""
    assert messages("rules:\n  - name: empty\n") == [
        "personalization.yml:2: rule 'empty': missing 'when' (the condition)",
        "personalization.yml:2: rule 'empty': missing 'then' (the outputs)",
    ]


def test_empty_rules_list_is_valid() -> None:
    """No rules: everyone gets the defaults."""
    assert parse_rules("rules: []\n").rules == ()


def test_rules_error_is_a_configuration_error_with_every_problem(tmp_path: Path) -> None:
    """load_rules raises one error carrying the list; its text has a line per problem."""
    path = tmp_path / "rules.yml"
    path.write_text("rules:\n  - name: a\n    when: {segmnet: x}\n    then: {offer_typ: none}\n")
    with pytest.raises(ConfigurationError) as caught:
        load_rules(path)
    error = caught.value
    assert isinstance(error, RulesError)
    assert [problem.line for problem in error.problems] == [3, 4]
    assert str(error).splitlines()[0] == f"{path}: 2 problems"
    assert str(error).splitlines()[1] == (
        f"{path}:3: rule 'a': unknown field 'segmnet' (did you mean 'segment'?)"
    )


def test_check_file(tmp_path: Path) -> None:
    """check_file lists problems (none for a good file, one for a missing file)."""
    good = tmp_path / "good.yml"
    good.write_text("rules:\n  - {name: a, when: {segment: loyal}, then: {offer_type: bundle}}\n")
    bad = tmp_path / "bad.yml"
    bad.write_text("rules:\n  - {name: a, when: {segment: royal}, then: {offer_type: bundle}}\n")
    latin = tmp_path / "latin.yml"
    latin.write_bytes("rules: []  # caf\xe9\n".encode("latin-1"))
    assert check_file(good) == []
    assert [problem.line for problem in check_file(bad)] == [2]
    assert [str(p) for p in check_file(tmp_path / "nope.yml")] == [
        f"{tmp_path / 'nope.yml'}: file not found"
    ]
    assert [str(p) for p in check_file(latin)] == [f"{latin}: the file is not UTF-8 text"]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        # YAML reads a bare yes as true: a key must be a name.
        (
            "rules: []\nyes: 1\n",
            "f.yml:2: a key must be a name, got true (YAML reads yes/no/on/off as true/false: "
            "put the text in quotes)",
        ),
        # A complex key.
        ("rules: []\n? [a, b]\n: 1\n", "f.yml:2: a key must be a name, not a list or a mapping"),
    ],
)
def test_odd_keys(text: str, message: str) -> None:
    """Keys that are not names are reported, not crashed on."""
    assert [str(problem) for problem in validate(text, "f.yml")[1]] == [message]
