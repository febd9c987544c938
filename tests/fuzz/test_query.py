"""The filter language: any text typed after ``/`` is a filter (errors said, never raised), and its
terms keep their meaning: AND of terms, ``!`` negates, a plain word is a substring."""

from __future__ import annotations

import pytest
from hypothesis import example, given
from hypothesis import strategies as st

from core import query
from core.metadata import LabMeta
from core.model import VM, VMState
from fuzz.strategies import hostile_text

field_words = st.sampled_from([*query.FIELDS, "re", "RE", "Owner", "foo", "", "!"])
terms = st.one_of(
    hostile_text(max_size=4),
    st.builds(lambda name, value: f"{name}:{value}", field_words, hostile_text(max_size=3)),
    st.builds(lambda value: f"re:{value}", st.text(st.sampled_from("a.*+?()[]{}|^$\\-1"), max_size=8)),
)
vms = st.builds(
    lambda name, owner, lab_class, state, host, ips: VM(host, "u", name, state, 1, 512,
                                                        LabMeta(owner, lab_class), tuple(ips)),
    hostile_text(max_size=4), hostile_text(max_size=3), hostile_text(max_size=3), st.sampled_from(VMState),
    st.sampled_from(["local", "lab1", "LAB-2"]), st.lists(hostile_text(max_size=2), max_size=2))


def _single(term: str) -> bool:
    return bool(term) and term.split() == [term]


@given(text=st.one_of(st.text(), st.lists(terms, max_size=5).map(" ".join)), vm=vms)
@example(text="re:(", vm=VM("local", "u", "a", VMState.RUNNING, 1, 512))
@example(text="re:", vm=VM("local", "u", "re:", VMState.RUNNING, 1, 512))
def test_any_text_is_a_filter(text: str, vm: VM) -> None:
    parsed = query.parse(text)
    assert parsed.empty == (not text.split())
    assert isinstance(parsed.matches(*query.fields_of(vm)), bool)
    assert isinstance(parsed.error, str)


@given(first=terms, second=terms, vm=vms)
def test_terms_are_anded(first: str, second: str, vm: VM) -> None:
    fields = query.fields_of(vm)
    both = query.parse(f"{first} {second}").matches(*fields)
    assert both == (query.parse(first).matches(*fields) and query.parse(second).matches(*fields))


@given(term=terms.filter(_single).filter(lambda t: not t.startswith("!")), vm=vms)
def test_a_bang_negates_any_term(term: str, vm: VM) -> None:
    fields = query.fields_of(vm)
    assert query.parse("!" + term).matches(*fields) == (not query.parse(term).matches(*fields))


@given(word=hostile_text(max_size=4).filter(lambda t: _single(t) and ":" not in t and not t.startswith("!")),
       vm=vms)
@example(word="\x00", vm=VM("local", "u", "", VMState.NOSTATE, 1, 512))  # matched the fields' separator
@example(word="e\x00n", vm=VM("local", "u", "vm", VMState.RUNNING, 1, 512, LabMeta("alice", "net101")))
def test_a_plain_word_is_a_substring_of_name_owner_class_or_state(word: str, vm: VM) -> None:
    fields, _ = query.fields_of(vm)
    expected = any(word.lower() in value for value in fields[:4])
    assert query.parse(word).matches(*query.fields_of(vm)) == expected


def test_a_regex_python_warns_about_is_no_warning_on_the_terminal(recwarn: pytest.WarningsRecorder) -> None:
    """``re:[[a]`` made re's FutureWarning "possible nested set", which Python prints on stderr:
    under the TUI, across its screen."""
    assert query.parse("re:[[a]").matches(("[a", "", "", "", "", ""), "[a")
    assert not [w for w in recwarn if issubclass(w.category, FutureWarning)]
