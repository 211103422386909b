"""Reading condition groups of ``upstreams`` (semantics `condition-groups`; the format in ``docs/dependencies.md``).

Rules:
- **Three rules.** A group is ``{"any": [...]}``, ``{"all": [...]}`` or ``{"at_least": N, "of": [...]}``; a member is
  whatever an upstream entry may be (a reference or an edge object, with every field an edge has).
- **One level.** ``all`` is the meaning of the ``upstreams`` list itself, so an ``all`` group is flattened into it
  and may hold ``any``/``at_least`` groups (a required input beside an ``any`` of two feeds); an ``any`` or
  ``at_least`` group holds edges only. Deeper nesting is refused, naming the way to write it.
- **Meaningless is refused.** An empty group, a group of one member ("write the edge itself"), ``at_least`` above the
  group's size or below 1, two rules in one object, and a cutoff (``cutoff``, ``min``, ``late``: not supported yet).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from coordinator.core.conditions import GroupRule
from coordinator.core.spec.grid import Add, check_fields, describe
from coordinator.core.spec.source import JsonPath

#: The keys that make an upstream entry a group rather than an edge (an edge has "dag").
RULE_KEYS = ("any", "all", "at_least")
GROUP_FIELDS = (*RULE_KEYS, "of")
#: Issue 50's cutoff, not built yet: refused by name rather than as unknown fields.
LATER_FIELDS = ("cutoff", "min", "late")
GROUP_EXAMPLE = '{"any": ["feed_a", "feed_b"]} or {"at_least": 2, "of": ["eu", "us", "apac"]}'


@dataclass(frozen=True, slots=True)
class WrittenGroup:
    """A group as written: its rule (None: ``all``, flattened by the loader), how many members it needs and each
    member's raw value with its JSON path."""

    rule: GroupRule | None
    need: int
    members: tuple[tuple[Any, JsonPath], ...]


def is_group(value: Any) -> bool:
    """Whether an upstream entry is a group (an object without ``dag`` naming a rule or a cutoff field)."""
    return (
        isinstance(value, dict) and "dag" not in value and any(key in value for key in (*GROUP_FIELDS, *LATER_FIELDS))
    )


def read_group(value: Mapping[str, Any], path: JsonPath, add: Add) -> WrittenGroup | None:
    """The group at ``path`` (**Three rules**, **Meaningless is refused**); None after reporting what is wrong."""
    ok = True
    for key in LATER_FIELDS:
        if key in value:
            add(
                (*path, key),
                f'"{key}" (a cutoff) is not supported yet',
                "remove it: a group runs its DAG when its rule holds, never earlier",
            )
            ok = False
    check_fields({k: v for k, v in value.items() if k not in LATER_FIELDS}, path, GROUP_FIELDS, add)
    ok = ok and all(key in (*GROUP_FIELDS, *LATER_FIELDS) for key in value)
    rules = [key for key in RULE_KEYS if key in value]
    if len(rules) != 1:
        what = "a group without a rule" if not rules else f"a group with {len(rules)} rules ({', '.join(rules)})"
        add(path, what, f"write one of any, all or at_least: {GROUP_EXAMPLE}")
        return None
    rule = rules[0]
    if rule == "at_least":
        need = value["at_least"]
        if isinstance(need, bool) or not isinstance(need, int) or need < 1:
            add((*path, "at_least"), f"expected a whole number of at least 1, got {describe(need)}", GROUP_EXAMPLE)
            ok = False
        if "of" not in value:
            add(path, '"at_least" without "of"', 'list the members in "of": {"at_least": 2, "of": ["a", "b", "c"]}')
            return None
        where: JsonPath = (*path, "of")
        members = value["of"]
    else:
        if "of" in value:
            add((*path, "of"), f'"of" belongs to "at_least", not to "{rule}"', f'write {{"{rule}": [...]}}')
            ok = False
        need, where, members = 1, (*path, rule), value[rule]
    if not isinstance(members, list):
        add(where, f"expected a list of members, got {describe(members)}", GROUP_EXAMPLE)
        return None
    if not members:
        add(where, f"empty {rule} group", "list its members, or remove the group")
        return None
    if len(members) == 1:
        add(where, f"a group of one member ({rule})", "write the edge itself in upstreams: one member needs no group")
        return None
    if rule == "at_least" and isinstance(need, int) and need > len(members):
        add(
            (*path, "at_least"),
            f"at_least {need} of {len(members)} members can never hold",
            f"write at most {len(members)}, or add members",
        )
        ok = False
    found = tuple((item, (*where, i)) for i, item in enumerate(members))
    if rule != "all":
        for item, at in found:
            if is_group(item):
                add(
                    at,
                    f"a group inside an {rule} group",
                    "groups nest one level: an any or at_least group lists edges; put it beside them in upstreams "
                    '(or in an "all" group), e.g. "upstreams": ["required", {"any": ["feed_a", "feed_b"]}]',
                )
                ok = False
    if not ok:
        return None
    return WrittenGroup(None if rule == "all" else GroupRule(rule), need if isinstance(need, int) else 1, found)
