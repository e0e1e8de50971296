"""Routing rules: ordered, per tenant; each is a name, a list of small named predicates (all must
hold) and actions. The first rule whose predicates all hold wins; no match goes to the tenant's
default group. Rules are stored as JSON (``routing_rules``) and compiled here.

Conditions (all optional, all must hold)::

    {"channel": ["webchat", "wechat"],           # any of
     "text_contains": ["refund", "退款"],         # any word, case-insensitive, in the first message
     "text_matches": "order\\\\s*#?\\\\d+",           # a regular expression, case-insensitive
     "customer_tags_any": ["vip"], "customer_tags_all": ["b2b", "gold"],
     "customer_attributes": {"language": ["zh", "zh-cn"], "region": "north"},
     "vip": true,                                # attribute "vip" true, or the tag "vip"
     "priority": ["high", "urgent"],
     "business_hours": "inside" | "outside",     # the tenant's weekly schedule, time zone, holidays
     "sla": "warning" | ["first_response", ...]} # near breach: see below

Actions: ``{"group_id": 3, "priority": "high", "add_tags": ["refund"], "required_skills": {"english": 2}}``.

A rule with the ``sla`` condition is not for the door: it is tried when an SLA deadline's warning
fires (core.sla; any target, or those listed), with the ticket as it is then (its subject is the
text), and may only raise the priority and add tags. Rules without it are tried only at the door.
"""

from __future__ import annotations

import re
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from core.errors import InvalidInput
from core.models import MAX_ID
from core.schedule import BusinessHours

MAX_PATTERN = 300


@dataclass(frozen=True)
class RoutingContext:
    """What rules look at: the ticket's first message and its customer, at a moment in time."""

    channel: str
    text: str
    priority: str
    customer_tags: frozenset[str]
    customer_attributes: dict[str, Any]
    now: datetime
    business_hours: BusinessHours | None = None
    # The target whose SLA warning fired (None at the door, where rules on warnings never match).
    sla_warning: str | None = None


@dataclass(frozen=True)
class Predicate:
    name: str
    test: Callable[[RoutingContext], bool]

    def __call__(self, ctx: RoutingContext) -> bool:
        return self.test(ctx)


@dataclass(frozen=True)
class RuleActions:
    group_id: int | None = None
    priority: str | None = None
    add_tags: tuple[str, ...] = ()
    required_skills: dict[str, int] = field(default_factory=dict)


@dataclass(frozen=True)
class Rule:
    id: int
    name: str
    predicates: tuple[Predicate, ...]
    actions: RuleActions

    # A rule for an SLA warning (the ``sla`` condition), not for the door.
    at_warning: bool = False

    def matches(self, ctx: RoutingContext) -> bool:
        return (ctx.sla_warning is not None) == self.at_warning and all(p(ctx) for p in self.predicates)


@dataclass(frozen=True)
class RuleMatch:
    rule: str | None  # None: no rule matched, the tenant's default applies
    actions: RuleActions
    predicates: tuple[str, ...] = ()


# --- compiling stored rules -------------------------------------------------------------------

def _strings(value: Any, what: str) -> tuple[str, ...]:
    if isinstance(value, str):
        value = [value]
    if not isinstance(value, list) or not value or not all(isinstance(v, str) and v for v in value):
        raise InvalidInput(f"{what} must be a non-empty list of strings", code="invalid_rule")
    return tuple(value)


def _lower(values: Iterable[str]) -> frozenset[str]:
    return frozenset(v.casefold() for v in values)


def _channel_in(allowed: frozenset[str]) -> Callable[[RoutingContext], bool]:
    return lambda c: c.channel in allowed


def _text_contains(words: tuple[str, ...]) -> Callable[[RoutingContext], bool]:
    return lambda c: any(w in c.text.casefold() for w in words)


def _text_matches(pattern: re.Pattern[str]) -> Callable[[RoutingContext], bool]:
    return lambda c: pattern.search(c.text) is not None


def _tags_any(tags: frozenset[str]) -> Callable[[RoutingContext], bool]:
    return lambda c: bool(tags & c.customer_tags)


def _tags_all(tags: frozenset[str]) -> Callable[[RoutingContext], bool]:
    return lambda c: tags <= c.customer_tags


def _attribute_in(attr: str, allowed: frozenset[str]) -> Callable[[RoutingContext], bool]:
    return lambda c: str(c.customer_attributes.get(attr, "")).casefold() in allowed


def _vip_is(wanted: bool) -> Callable[[RoutingContext], bool]:
    return lambda c: _is_vip(c) == wanted


def _priority_in(allowed: frozenset[str]) -> Callable[[RoutingContext], bool]:
    return lambda c: c.priority in allowed


def _hours_are(inside: bool) -> Callable[[RoutingContext], bool]:
    return lambda c: _open(c) == inside


def _warned_for(targets: frozenset[str]) -> Callable[[RoutingContext], bool]:
    return lambda c: c.sla_warning in targets


SLA_TARGETS = ("first_response", "next_response", "resolution")
# What a rule on an SLA warning may do: the ticket is in someone's hands already.
WARNING_ACTIONS = frozenset({"priority", "add_tags"})


def compile_conditions(conditions: dict[str, Any]) -> tuple[Predicate, ...]:
    """Turn stored conditions into predicates; raises InvalidInput naming what is wrong."""
    if not isinstance(conditions, dict):
        raise InvalidInput("conditions must be an object", code="invalid_rule")
    preds: list[Predicate] = []
    for key, value in conditions.items():
        if key == "channel":
            channels = frozenset(_strings(value, "channel"))
            preds.append(Predicate(f"channel in {sorted(channels)}", _channel_in(channels)))
        elif key == "text_contains":
            words = tuple(w.casefold() for w in _strings(value, "text_contains"))
            preds.append(Predicate(f"text contains any of {list(words)}", _text_contains(words)))
        elif key == "text_matches":
            if not isinstance(value, str) or not value or len(value) > MAX_PATTERN:
                raise InvalidInput(f"text_matches is a pattern of 1-{MAX_PATTERN} characters", code="invalid_rule")
            try:
                pattern = re.compile(value, re.IGNORECASE)
            except re.error as exc:
                raise InvalidInput(f"text_matches is not a valid pattern: {exc}", code="invalid_rule") from None
            preds.append(Predicate(f"text matches /{value}/", _text_matches(pattern)))
        elif key == "customer_tags_any":
            tags = _lower(_strings(value, key))
            preds.append(Predicate(f"customer has any tag of {sorted(tags)}", _tags_any(tags)))
        elif key == "customer_tags_all":
            tags = _lower(_strings(value, key))
            preds.append(Predicate(f"customer has all tags {sorted(tags)}", _tags_all(tags)))
        elif key == "customer_attributes":
            if not isinstance(value, dict) or not value:
                raise InvalidInput("customer_attributes maps attribute names to values", code="invalid_rule")
            for attr, wanted in value.items():
                allowed = _lower(_strings(wanted, f"customer_attributes.{attr}"))
                preds.append(Predicate(f"customer {attr} in {sorted(allowed)}", _attribute_in(attr, allowed)))
        elif key == "vip":
            if not isinstance(value, bool):
                raise InvalidInput("vip is true or false", code="invalid_rule")
            preds.append(Predicate(f"customer is {'' if value else 'not '}VIP", _vip_is(value)))
        elif key == "priority":
            prios = frozenset(_strings(value, "priority"))
            bad = prios - {"low", "normal", "high", "urgent"}
            if bad:
                raise InvalidInput(f"unknown priority {sorted(bad)[0]!r}", code="invalid_rule")
            preds.append(Predicate(f"priority in {sorted(prios)}", _priority_in(prios)))
        elif key == "business_hours":
            if value not in ("inside", "outside"):
                raise InvalidInput('business_hours is "inside" or "outside"', code="invalid_rule")
            preds.append(Predicate(f"{value} business hours", _hours_are(value == "inside")))
        elif key == "sla":
            targets = frozenset(SLA_TARGETS if value == "warning" else _strings(value, "sla"))
            if not targets <= set(SLA_TARGETS):
                raise InvalidInput(f'sla is "warning" or a list of {", ".join(SLA_TARGETS)}', code="invalid_rule")
            preds.append(Predicate(f"SLA warning for {sorted(targets)}", _warned_for(targets)))
        else:
            raise InvalidInput(f"unknown condition {key!r}", code="invalid_rule")
    return tuple(preds)


def _is_vip(ctx: RoutingContext) -> bool:
    flag = ctx.customer_attributes.get("vip")
    return flag is True or str(flag).casefold() in ("true", "1", "yes") or "vip" in ctx.customer_tags


def _open(ctx: RoutingContext) -> bool:
    # A tenant without a schedule is always open.
    return ctx.business_hours.is_open(ctx.now) if ctx.business_hours else True


def compile_actions(actions: dict[str, Any]) -> RuleActions:
    if not isinstance(actions, dict) or not actions:
        raise InvalidInput("a rule needs at least one action", code="invalid_rule")
    unknown = set(actions) - {"group_id", "priority", "add_tags", "required_skills"}
    if unknown:
        raise InvalidInput(f"unknown action {sorted(unknown)[0]!r}", code="invalid_rule")
    group_id = actions.get("group_id")
    if group_id is not None and (not isinstance(group_id, int) or isinstance(group_id, bool)
                                 or not 0 < group_id <= MAX_ID):
        raise InvalidInput(f"group_id must be a positive integer up to {MAX_ID}", code="invalid_rule")
    priority = actions.get("priority")
    if priority is not None and priority not in ("low", "normal", "high", "urgent"):
        raise InvalidInput(f"unknown priority {priority!r}", code="invalid_rule")
    tags = tuple(t.strip().lower() for t in _strings(actions["add_tags"], "add_tags")) if "add_tags" in actions else ()
    skills = actions.get("required_skills") or {}
    if not isinstance(skills, dict) or not all(
        isinstance(k, str) and k and isinstance(v, int) and not isinstance(v, bool) and 0 < v <= 10
        for k, v in skills.items()
    ):
        raise InvalidInput("required_skills maps skill names to levels 1-10", code="invalid_rule")
    return RuleActions(group_id=group_id, priority=priority, add_tags=tags,
                       required_skills={k.lower(): v for k, v in skills.items()})


def compile_rule(rule_id: int, name: str, conditions: dict[str, Any], actions: dict[str, Any]) -> Rule:
    at_warning = isinstance(conditions, dict) and "sla" in conditions
    if at_warning and isinstance(actions, dict) and set(actions) - WARNING_ACTIONS:
        raise InvalidInput("a rule on an SLA warning may only raise the priority and add tags",
                           code="invalid_rule")
    return Rule(rule_id, name, compile_conditions(conditions), compile_actions(actions), at_warning)


def evaluate(rules: Iterable[Rule], ctx: RoutingContext, default_group_id: int | None) -> RuleMatch:
    """The first rule that matches, or the tenant's default."""
    for rule in rules:
        if rule.matches(ctx):
            actions = rule.actions
            if actions.group_id is None and default_group_id is not None:
                actions = RuleActions(default_group_id, actions.priority, actions.add_tags, actions.required_skills)
            return RuleMatch(rule.name, actions, tuple(p.name for p in rule.predicates))
    return RuleMatch(None, RuleActions(group_id=default_group_id))
