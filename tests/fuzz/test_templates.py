"""templates.toml: any file is a set of valid templates, or a ConfigError naming every problem."""

from __future__ import annotations

import dataclasses
import os
import tempfile
from pathlib import Path

from hypothesis import event, example, given
from hypothesis import strategies as st

from core.errors import ConfigError
from core.names import VM_NAME
from core.provision.templates import _CHOICES, Template, check_files, load_templates
from fuzz.strategies import BROKEN_TOML, TOML_VALUES, hostile_text, toml_document

SETTINGS = [f.name for f in dataclasses.fields(Template) if f.name not in ("name", "extra")]
GOOD_VALUES = {
    **{key: st.sampled_from(choices) for key, choices in _CHOICES.items()},
    "image": st.sampled_from(["tiny/base.qcow2", "/var/lib/x.qcow2", "~/t.qcow2", "é/日本.qcow2"]),
    "kernel": st.sampled_from(["tiny/vmlinuz", "/boot/vmlinuz"]), "initrd": st.just("tiny/initrd.img"),
    "network": st.sampled_from(["none", "network:default", "bridge:br0"]),
    "vcpus": st.integers(1, 64), "memory_mib": st.integers(1, 2**40), "disk_size_gib": st.integers(1, 10),
}
ODD_VALUES = {
    "image": st.sampled_from(["a\x00b", "..", " ", "~nobody-here/x", "/" * 300]),
    "network": st.sampled_from(["network:", "nat", "bridge:\x1b[2J", "NONE"]),
    "vcpus": st.integers(-2, 0), "memory_mib": st.sampled_from([0, -1, 2**63 - 1]),
}
good_names = st.from_regex(r"[A-Za-z0-9]([A-Za-z0-9-]{0,10}[A-Za-z0-9])?", fullmatch=True)
names = st.one_of(good_names, good_names, st.sampled_from(["a" * 63, "a" * 64, "-x", "x-", ""]),
                  hostile_text(max_size=3))
entries = st.dictionaries(
    st.one_of(st.sampled_from(SETTINGS), st.text(max_size=8)),
    st.one_of(TOML_VALUES, st.text(max_size=8)), max_size=8)


@st.composite
def template_tables(draw: st.DrawFn) -> dict[str, object]:
    """Known settings with good values mostly; now and then an odd value, any value, an unknown key."""
    table: dict[str, object] = {"image": "tiny/base.qcow2"} if draw(st.integers(0, 3)) else {}
    for key in draw(st.lists(st.sampled_from(SETTINGS), unique=True, max_size=len(SETTINGS))):
        good = GOOD_VALUES.get(key, hostile_text(max_size=3))
        odd = st.one_of(ODD_VALUES[key], TOML_VALUES) if key in ODD_VALUES else TOML_VALUES
        table[key] = draw(odd if draw(st.integers(0, 7)) == 0 else good)
    table.update(draw(entries) if draw(st.integers(0, 9)) == 0 else {})
    return table


documents = st.one_of(
    st.dictionaries(names.map(lambda n: f"templates.{n}"), template_tables(), max_size=3).map(toml_document),
    st.dictionaries(st.sampled_from(["templates", "other", "templates.x.y"]), entries, max_size=2)
    .map(toml_document),
    BROKEN_TOML,
)


@given(text=documents)
@example(text='templates = 3\n')
@example(text='[templates.tiny]\nimage = "a\\u0000b"\n')
def test_any_templates_file_is_templates_or_a_config_error(text: str) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "templates.toml"
        path.write_text(text, encoding="utf-8", errors="surrogateescape")
        try:
            templates = load_templates(path, Path(folder) / "images")
        except ConfigError as exc:
            assert exc.message.startswith(f"{path}:")
            event("refused")
            return
        event(f"read, {min(len(templates), 2)} template(s) or more")
        for name, template in templates.items():
            assert VM_NAME.fullmatch(name)
            assert template.name == name
            assert template.image is not None or template.kernel is not None
            for key, choices in _CHOICES.items():
                assert getattr(template, key) in choices
            assert min(template.vcpus, template.memory_mib, template.disk_size_gib) > 0
            assert template.network == "none" or template.network.startswith(("network:", "bridge:"))
            for check in check_files(template, "root"):
                assert isinstance(check.problem, str)


good_tables = st.fixed_dictionaries({"image": GOOD_VALUES["image"]}, optional={
    key: GOOD_VALUES.get(key, st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7e), max_size=10))
    for key in SETTINGS if key != "image"})


@given(tables=st.dictionaries(good_names, good_tables, min_size=1, max_size=3))
def test_good_templates_are_read_as_written(tables: dict[str, dict[str, object]]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "templates.toml"
        path.write_text(toml_document({f"templates.{name}": table for name, table in tables.items()}))
        templates = load_templates(path, Path("/images"))
    assert sorted(templates) == sorted(tables)
    for name, table in tables.items():
        for key, value in table.items():
            read = getattr(templates[name], key)
            assert read == (Path("/images", os.path.expanduser(value)) if isinstance(read, Path) else value)
