"""Windows answer files: compared with golden files, validated by a schema, read back from the ISO.

Windows cannot run here, so the document is pinned byte for byte (``tests/unit/unattend/*.xml``)
and checked against ``unattend.xsd``, an XSD 1.1 description of the part of Microsoft's unattend
schema we emit. After a deliberate change, rewrite the golden files with
``VMM_UPDATE_GOLDEN=1 .venv/bin/pytest tests/unit/test_unattend.py`` and review the diff.
"""

from __future__ import annotations

import io
import os
import re
import stat
import xml.etree.ElementTree as ET
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path

import pycdlib
import pytest
import xmlschema

from core.errors import InvalidInput
from core.provision.guests.windows import (
    KEYBOARDS,
    UNATTEND_NS,
    WCM_NS,
    WindowsSeed,
    answer_file,
    computer_name,
    input_locale,
    read_answer_file,
    windows_language,
    write_windows_seed_iso,
)

DATA = Path(__file__).parent / "unattend"
U = f"{{{UNATTEND_NS}}}"
ACTION = f"{{{WCM_NS}}}action"
NETBIOS = re.compile(r"^(?![0-9]+$)[A-Za-z0-9](?:[A-Za-z0-9-]{0,13}[A-Za-z0-9])?$")

FR = WindowsSeed(computer_name="net101-alice", username="alice", full_name="Alice Martin",
                 password="Student2026", admin_password="Adm1nFixedPw42")
US = WindowsSeed(computer_name=computer_name("sys202-bob-windows11"), username="bob",
                 full_name="Bob O'Brien", password="Bobby2026x", admin_password="Adm1nOtherPw77",
                 keyboard="us", locale="en_US.UTF-8", time_zone="Eastern Standard Time",
                 firmware="uefi", image_index=6)
GOLDEN = {"fr-bios.xml": FR, "us-uefi.xml": US}

HOSTILE_NAMES = [
    "Zoë <script>alert(1)</script> & \"Ñúñez\" 'O'Brien'",
    "]]> <![CDATA[ evil ]]>",
    "</DisplayName><Group>Guests</Group><Name>root",
    "&amp; &lt; &#60; &xxe; <!DOCTYPE x [<!ENTITY xxe SYSTEM 'file:///etc/passwd'>]>",
    "李雷 Ольга Δημήτρης 😀 \u00a0non-breaking",
    "  leading and trailing spaces  ",
]


@pytest.fixture(scope="module")
def schema() -> xmlschema.XMLSchema11:
    return xmlschema.XMLSchema11(str(DATA / "unattend.xsd"))


def parse(seed: WindowsSeed) -> ET.Element:
    return ET.fromstring(answer_file(seed))


def text(root: ET.Element, path: str) -> str | None:
    element = root.find(_qualify(path))
    assert element is not None, path
    return element.text


def _qualify(path: str) -> str:
    return "/".join(part if part in (".", "..") or part.startswith("[") else U + part
                    for part in path.split("/"))


def settings(root: ET.Element, pass_name: str) -> ET.Element:
    (found,) = [s for s in root.findall(f"{U}settings") if s.get("pass") == pass_name]
    return found


def component(root: ET.Element, pass_name: str, name: str) -> ET.Element:
    (found,) = [c for c in settings(root, pass_name).findall(f"{U}component") if c.get("name") == name]
    return found


# Golden files and the schema


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_answer_file_matches_its_golden_file(name: str) -> None:
    made = answer_file(GOLDEN[name])
    if os.environ.get("VMM_UPDATE_GOLDEN"):
        (DATA / name).write_bytes(made)
    assert made == (DATA / name).read_bytes()


@pytest.mark.parametrize("name", sorted(GOLDEN))
def test_golden_files_are_valid(schema: xmlschema.XMLSchema11, name: str) -> None:
    schema.validate(str(DATA / name))


def _without(path: str) -> Callable[[ET.Element], None]:
    def mutate(root: ET.Element) -> None:
        *parents, last = path.split("/")
        parent = root.find(_qualify("/".join(parents)))
        assert parent is not None
        child = parent.find(U + last)
        assert child is not None
        parent.remove(child)
    return mutate


def _set_text(path: str, value: str) -> Callable[[ET.Element], None]:
    def mutate(root: ET.Element) -> None:
        element = root.find(_qualify(path))
        assert element is not None
        element.text = value
    return mutate


def _swap_passes(root: ET.Element) -> None:
    specialize = root[1]
    root.remove(specialize)
    root.append(specialize)


def _rename_pass(root: ET.Element) -> None:
    root[1].set("pass", "auditSystem")


def _rename_component(root: ET.Element) -> None:
    root[1][0].set("name", "Microsoft-Windows-Deployment")


def _x86(root: ET.Element) -> None:
    root[0][1].set("processorArchitecture", "x86")


def _no_action(root: ET.Element) -> None:
    disk = root.find(_qualify("settings/component/DiskConfiguration/Disk"))
    assert disk is not None
    del disk.attrib[ACTION]


def _extend_first(root: ET.Element) -> None:
    first = root.find(_qualify("settings/component/DiskConfiguration/Disk/CreatePartitions/CreatePartition"))
    assert first is not None
    size = first.find(f"{U}Size")
    assert size is not None
    size.tag, size.text = f"{U}Extend", "true"


def _skip_machine_oobe(root: ET.Element) -> None:
    oobe = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup").find(f"{U}OOBE")
    assert oobe is not None
    ET.SubElement(oobe, f"{U}SkipMachineOOBE").text = "true"


SETUP = "settings[1]/component[2]"
SHELL_OOBE = "settings[3]/component[2]"
BROKEN = {
    "no ComputerName": _without("settings[2]/component/ComputerName"),
    "no AcceptEula": _without(f"{SETUP}/UserData/AcceptEula"),
    "no local account": _without(f"{SHELL_OOBE}/UserAccounts/LocalAccounts/LocalAccount"),
    "no Administrator password": _without(f"{SHELL_OOBE}/UserAccounts/AdministratorPassword"),
    "no HideEULAPage": _without(f"{SHELL_OOBE}/OOBE/HideEULAPage"),
    "no disk wipe": _without(f"{SETUP}/DiskConfiguration/Disk/WillWipeDisk"),
    "passes out of order": _swap_passes,
    "unknown pass": _rename_pass,
    "unknown component": _rename_component,
    "x86 component": _x86,
    "list item without wcm:action": _no_action,
    "Extend before the last partition": _extend_first,
    "deprecated SkipMachineOOBE": _skip_machine_oobe,
    "computer name of 16": _set_text("settings[2]/component/ComputerName", "A" * 16),
    "all-digit computer name": _set_text("settings[2]/component/ComputerName", "12345"),
    "weak password": _set_text(f"{SHELL_OOBE}/UserAccounts/AdministratorPassword/Value", "password"),
    "bad input locale": _set_text("settings[1]/component[1]/InputLocale", "fr-FR"),
    "ProtectYourPC 4": _set_text(f"{SHELL_OOBE}/OOBE/ProtectYourPC", "4"),
    "group Guests": _set_text(f"{SHELL_OOBE}/UserAccounts/LocalAccounts/LocalAccount/Group", "Guests"),
    "image index 0": _set_text(f"{SETUP}/ImageInstall/OSImage/InstallFrom/MetaData/Value", "0"),
    "PlainText yes": _set_text(f"{SHELL_OOBE}/UserAccounts/AdministratorPassword/PlainText", "yes"),
}


@pytest.mark.parametrize("breakage", sorted(BROKEN))
def test_the_schema_refuses_a_broken_document(schema: xmlschema.XMLSchema11, breakage: str) -> None:
    root = ET.fromstring(answer_file(US))
    assert schema.is_valid(ET.tostring(root, encoding="unicode"))  # the break, not the base, fails
    BROKEN[breakage](root)
    assert not schema.is_valid(ET.tostring(root, encoding="unicode"))


# What the document says


def test_the_document_has_the_settings_windows_setup_needs() -> None:
    data = answer_file(FR)
    assert data.startswith(b"<?xml version='1.0' encoding='utf-8'?>\n"
                           b'<unattend xmlns="urn:schemas-microsoft-com:unattend"')
    root = ET.fromstring(data)
    assert root.tag == f"{U}unattend"
    assert [s.get("pass") for s in root] == ["windowsPE", "specialize", "oobeSystem"]
    for element in root.iter(f"{U}component"):
        assert {k: v for k, v in element.attrib.items() if k != "name"} == {
            "processorArchitecture": "amd64", "publicKeyToken": "31bf3856ad364e35",
            "language": "neutral", "versionScope": "nonSxS"}
    for pass_name, name in (("windowsPE", "Microsoft-Windows-International-Core-WinPE"),
                            ("oobeSystem", "Microsoft-Windows-International-Core")):
        intl = component(root, pass_name, name)
        assert text(intl, "./InputLocale") == "040c:0000040c"
        for tag in ("SystemLocale", "UILanguage", "UserLocale"):
            assert text(intl, f"./{tag}") == "fr-FR"
    special = component(root, "specialize", "Microsoft-Windows-Shell-Setup")
    assert text(special, "./ComputerName") == "net101-alice"
    assert text(special, "./TimeZone") == "Romance Standard Time"
    shell = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup")
    oobe = shell.find(f"{U}OOBE")
    assert oobe is not None
    flags = {child.tag.removeprefix(U): child.text for child in oobe}
    for page in ("HideEULAPage", "HideOnlineAccountScreens", "HideWirelessSetupInOOBE"):
        assert flags[page] == "true"
    assert flags["ProtectYourPC"] == "3"
    assert "SkipMachineOOBE" not in flags  # deprecated on Windows 10 and 11
    assert "SkipUserOOBE" not in flags
    assert text(shell, "./UserAccounts/AdministratorPassword/Value") == "Adm1nFixedPw42"
    account = shell.find(_qualify("UserAccounts/LocalAccounts/LocalAccount"))
    assert account is not None
    assert account.get(ACTION) == "add"
    assert text(account, "./Name") == "alice"
    assert text(account, "./DisplayName") == "Alice Martin"
    assert text(account, "./Group") == "Administrators"
    assert text(account, "./Password/Value") == "Student2026"


@pytest.mark.parametrize(("firmware", "types", "windows_partition"),
                         [("bios", ["Primary"], "1"), ("uefi", ["EFI", "MSR", "Primary"], "3")])
def test_disk_0_is_wiped_and_windows_goes_on_the_last_partition(
        firmware: str, types: list[str], windows_partition: str) -> None:
    setup = component(parse(replace(FR, firmware=firmware)), "windowsPE", "Microsoft-Windows-Setup")
    disk = setup.find(_qualify("DiskConfiguration/Disk"))
    assert disk is not None
    assert text(disk, "./DiskID") == "0"
    assert text(disk, "./WillWipeDisk") == "true"
    assert [p.findtext(f"{U}Type") for p in disk.iter(f"{U}CreatePartition")] == types
    windows = [p for p in disk.iter(f"{U}ModifyPartition") if p.findtext(f"{U}Letter") == "C"]
    assert [p.findtext(f"{U}PartitionID") for p in windows] == [windows_partition]
    assert text(setup, "./ImageInstall/OSImage/InstallTo/PartitionID") == windows_partition
    assert text(setup, "./ImageInstall/OSImage/InstallFrom/MetaData/Key") == "/IMAGE/INDEX"


def test_an_empty_full_name_leaves_out_the_display_name(schema: xmlschema.XMLSchema11) -> None:
    data = answer_file(replace(FR, full_name=""))
    assert b"DisplayName" not in data
    schema.validate(data.decode())


# Hostile values stay data


@pytest.mark.parametrize("full_name", HOSTILE_NAMES)
def test_hostile_full_names_round_trip(schema: xmlschema.XMLSchema11, full_name: str) -> None:
    data = answer_file(replace(FR, full_name=full_name))
    root = ET.fromstring(data)
    account = component(root, "oobeSystem", "Microsoft-Windows-Shell-Setup").find(
        _qualify("UserAccounts/LocalAccounts/LocalAccount"))
    assert account is not None
    assert text(account, "./DisplayName") == full_name
    assert [child.tag.removeprefix(U) for child in account] == ["Password", "DisplayName", "Group", "Name"]
    assert text(account, "./Group") == "Administrators"
    assert len(list(root.iter(f"{U}settings"))) == 3
    schema.validate(data.decode())


def test_hostile_passwords_round_trip() -> None:
    password, admin = "Aa1<&]]>\"'é€", "Zz9</Value><PlainText>false"
    shell = component(parse(replace(FR, password=password, admin_password=admin)), "oobeSystem",
                      "Microsoft-Windows-Shell-Setup")
    assert text(shell, "./UserAccounts/LocalAccounts/LocalAccount/Password/Value") == password
    assert text(shell, "./UserAccounts/AdministratorPassword/Value") == admin
    assert text(shell, "./UserAccounts/AdministratorPassword/PlainText") == "true"


# Refusals


@pytest.mark.parametrize(("field", "weak", "who"), [
    ("password", "short1A", "student"), ("password", "alllower123", "student"),
    ("admin_password", "NOLOWER123", "Administrator"), ("admin_password", "NoDigitsAtAll", "Administrator"),
])
def test_weak_passwords_are_refused(tmp_path: Path, field: str, weak: str, who: str) -> None:
    seed = replace(FR, **{field: weak})
    with pytest.raises(InvalidInput, match=f"{who}.*uppercase"):
        answer_file(seed)
    path = tmp_path / "seed.iso"
    with pytest.raises(InvalidInput):
        write_windows_seed_iso(path, seed)
    assert not path.exists()


@pytest.mark.parametrize(("changes", "message"), [
    ({"password": "Good1pass\x00"}, "control character"),
    ({"admin_password": "Good1pass\n"}, "control character"),
    ({"username": "Alice"}, "invalid username"),
    ({"username": "../root"}, "invalid username"),
    ({"username": "a" * 21}, "at most 20"),
    ({"username": "alice."}, "not ending with '.'"),
    ({"username": "administrator"}, "built-in"),
    ({"username": "guest"}, "built-in"),
    ({"username": "users"}, "built-in"),  # a user may not be named like a local group
    ({"username": "net101-alice"}, "named like the computer"),
    ({"full_name": "Eve\x00"}, "full name holds a control character"),
    ({"full_name": "Eve\nMallory"}, "full name holds a control character"),
    ({"full_name": "Eve\x1b[31m"}, "full name holds a control character"),
    ({"full_name": "Eve\ud800"}, "full name holds a control character"),
    ({"full_name": "E" * 257}, "full name too long"),
    ({"computer_name": "A" * 16}, "computer name"),
    ({"computer_name": "12345"}, "computer name"),
    ({"computer_name": "lab-"}, "computer name"),
    ({"computer_name": "lab_1"}, "computer name"),
    ({"computer_name": ""}, "computer name"),
    ({"keyboard": "dvorak"}, "keyboard layout 'dvorak'"),
    ({"locale": "C.UTF-8"}, "locale 'C.UTF-8'"),
    ({"time_zone": "Europe/Paris"}, "time zone 'Europe/Paris'"),
    ({"time_zone": ""}, "time zone"),
    ({"firmware": "coreboot"}, "firmware 'coreboot'"),
    ({"image_index": 0}, "image index"),
])
def test_bad_values_are_refused_with_a_reason(changes: dict[str, object], message: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(message)):
        answer_file(replace(FR, **changes))  # type: ignore[arg-type]


@pytest.mark.parametrize(("layout", "expected"), [
    ("fr", "040c:0000040c"), ("us", "0409:00000409"), ("de", "0407:00000407"), ("be", "080c:0000080c"),
    ("ch", "0807:00000807"), ("gb", "0809:00000809"), ("es", "0c0a:0000040a"), ("it", "0410:00000410"),
])
def test_keyboard_layouts_map_to_windows_input_locales(layout: str, expected: str) -> None:
    assert input_locale(layout) == expected
    root = parse(replace(FR, keyboard=layout))
    intl = component(root, "oobeSystem", "Microsoft-Windows-International-Core")
    assert text(intl, "./InputLocale") == expected


def test_every_known_layout_is_tested() -> None:
    assert set(KEYBOARDS) == {"fr", "us", "de", "be", "ch", "gb", "es", "it"}


def test_an_unknown_layout_is_named() -> None:
    with pytest.raises(InvalidInput, match="'fr-latin9'.*known: be, ch"):
        input_locale("fr-latin9")


@pytest.mark.parametrize(("locale", "language"), [
    ("fr_FR.UTF-8", "fr-FR"), ("en_US.UTF-8", "en-US"), ("de_CH.utf8", "de-CH"), ("fr_BE", "fr-BE"),
])
def test_locales_map_to_windows_languages(locale: str, language: str) -> None:
    assert windows_language(locale) == language


@pytest.mark.parametrize("locale", ["C.UTF-8", "POSIX", "fr", "sr_RS@latin", "fr-FR", "", "fr_FR.UTF-8\n"])
def test_locales_without_a_windows_equivalent_are_named(locale: str) -> None:
    with pytest.raises(InvalidInput, match=re.escape(repr(locale))):
        windows_language(locale)


# Computer names


@pytest.mark.parametrize("vm_name", ["net101-alice", "a", "W11", "exactly-15-char"])
def test_short_vm_names_are_kept(vm_name: str) -> None:
    assert computer_name(vm_name) == vm_name


def test_long_vm_names_are_shortened_deterministically_and_distinctly() -> None:
    first, second = "net101-alice-windows11", "net101-alice-windows10"
    short = computer_name(first)
    assert short == computer_name(first)
    assert len(short) == 15
    assert short.startswith("net101-ali-")
    assert re.fullmatch(r"[0-9a-f]{4}", short[-4:])
    assert computer_name(second) != short
    assert computer_name("exactly-16-chars") != computer_name("exactly-16-charz")


@pytest.mark.parametrize("vm_name", [
    "net101-alice-windows11", "1234567890123456", "2026", "abcdefghi-j-k-l-m", "a" * 63, "x-" * 31 + "y",
])
def test_computer_names_are_valid_netbios_names(vm_name: str) -> None:
    name = computer_name(vm_name)
    assert NETBIOS.fullmatch(name), name
    answer_file(replace(FR, computer_name=name))  # and the seed takes it


@pytest.mark.parametrize("vm_name", ["bad name", "-lead", "", "a" * 64])
def test_invalid_vm_names_are_refused(vm_name: str) -> None:
    with pytest.raises(InvalidInput, match="VM name"):
        computer_name(vm_name)


# The ISO


def test_iso_round_trip_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "unattend.iso"
    write_windows_seed_iso(path, US)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600  # holds passwords
    assert read_answer_file(path) == answer_file(US) == (DATA / "us-uefi.xml").read_bytes()
    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        for where in ({"iso_path": "/AUTOUNATTEND.XML;1"}, {"rr_path": "/autounattend.xml"},
                      {"joliet_path": "/autounattend.xml"}):
            out = io.BytesIO()
            iso.get_file_from_iso_fp(out, **where)
            assert out.getvalue() == answer_file(US), where
        assert iso.pvd.volume_identifier.decode().strip() == "UNATTEND"
    finally:
        iso.close()


def test_an_existing_file_is_never_overwritten(tmp_path: Path) -> None:
    path = tmp_path / "unattend.iso"
    path.write_bytes(b"keep me")
    with pytest.raises(FileExistsError):
        write_windows_seed_iso(path, FR)
    assert path.read_bytes() == b"keep me"
