"""The filter language of the `/` prompt (documented on the help screen, from :data:`SYNTAX`).

A filter is whitespace-separated terms; a VM is shown when every term matches (AND):

* ``alice``            substring of name, owner, class or state (case-insensitive)
* ``owner:alice``      substring of one field: name, owner, class, state, host, ip
* ``re:^net101-[a-f]`` regular expression searched in name, owner, class and state
* ``!term``            negation of any of the above, e.g. ``!state:shutoff``
"""

from __future__ import annotations

import re
import warnings
from collections.abc import Callable
from dataclasses import dataclass

from core.model import VM

SYNTAX: tuple[tuple[str, str], ...] = (
    ("alice", "substring of name, owner, class or state (case-insensitive)"),
    ("owner:alice", "one field: name, owner, class, state, host or ip"),
    ("state:running", "e.g. only running VMs; class:net101 one class"),
    ("re:^net101-[a-f]", "regular expression on name, owner, class and state"),
    ("!term", "negates a term, e.g. !state:shutoff"),
    ("a b", "every term must match (AND)"),
)

FIELDS = ("name", "owner", "class", "state", "host", "ip")
_SEP = "\n"
"""Between the fields of the blob plain terms search: whitespace, which no term holds (terms are
split on it), so no term matches across two fields."""

# What a term is tested against: the lowercased fields of one VM.
Fields = tuple[str, str, str, str, str, str]
Predicate = Callable[[Fields, str], bool]


def fields_of(vm: VM) -> tuple[Fields, str]:
    """The lowercased fields and the blob (name, owner, class, state) that plain terms search."""
    values: Fields = (vm.name.lower(), vm.meta.owner.lower(), vm.meta.lab_class.lower(),
                      vm.state.value, vm.host.lower(), " ".join(vm.ips).lower())
    return values, _SEP.join(values[:4])


@dataclass(frozen=True)
class Query:
    """A parsed filter; :meth:`matches` is what the table calls for every VM on each keystroke."""

    text: str = ""
    predicates: tuple[Predicate, ...] = ()
    error: str = ""

    @property
    def empty(self) -> bool:
        return not self.predicates

    def matches(self, fields: Fields, blob: str) -> bool:
        return all(p(fields, blob) for p in self.predicates)


def _substring(term: str) -> Predicate:
    return lambda _fields, blob: term in blob


def _field(index: int, term: str) -> Predicate:
    return lambda fields, _blob: term in fields[index]


def _regex(pattern: re.Pattern[str]) -> Predicate:
    return lambda fields, _blob: any(pattern.search(f) for f in fields[:4])


def _negate(predicate: Predicate) -> Predicate:
    return lambda fields, blob: not predicate(fields, blob)


def parse(text: str) -> Query:
    """Parse a filter; a bad regular expression or an unknown field is matched as plain text and
    reported in ``error``."""
    predicates: list[Predicate] = []
    errors: list[str] = []
    for raw in text.split():
        negated = raw.startswith("!") and len(raw) > 1
        term = raw[1:] if negated else raw
        predicate: Predicate
        name, sep, value = term.partition(":")
        if sep and name.lower() == "re" and value:
            try:
                with warnings.catch_warnings():  # "possible nested set" and the like: not news
                    warnings.simplefilter("ignore")
                    predicate = _regex(re.compile(value, re.IGNORECASE))
            except re.error as exc:
                errors.append(f"bad regex {value!r}: {exc.msg}; matched as text")
                predicate = _substring(value.lower())
        elif sep and name.lower() in FIELDS:
            predicate = _field(FIELDS.index(name.lower()), value.lower())
        elif sep and name.isalpha():  # a field name mistyped (foo:bar): said, then matched as text
            errors.append(f"unknown field {name!r} (fields: {', '.join(FIELDS)}, re); matched as text")
            predicate = _substring(term.lower())
        else:
            predicate = _substring(term.lower())
        predicates.append(_negate(predicate) if negated else predicate)
    return Query(text, tuple(predicates), "; ".join(errors))
