"""Windows answer files: ``autounattend.xml`` on a small ISO, so Windows Setup installs unattended.

Windows Setup looks for ``autounattend.xml`` at the root of every removable and CD drive, so the
file goes on a second virtual CD next to the Windows ISO. The document is built with ElementTree,
never by string formatting: a full name holding ``<``, ``&`` or ``]]>`` stays text. Every value is
checked first (passwords against Windows' complexity rule, names against Windows' own limits), so
a seed Windows would refuse halfway through an install is refused here, before anything is written.

The answer file covers the three passes an ISO install needs:

- ``windowsPE``: languages for Setup, the disk layout (disk 0 wiped) and the image to install;
- ``specialize``: computer name and time zone;
- ``oobeSystem``: locales again (so OOBE asks nothing), the OOBE pages hidden, the built-in
  Administrator's password and the student's own account in Administrators.

``SkipMachineOOBE``/``SkipUserOOBE`` are deliberately absent: Microsoft deprecated them for
Windows 10 and 11, where they can leave an install without a usable account. The Hide* settings
plus a local account in the answer file skip OOBE on both.

Passwords are written in clear (``PlainText``): Microsoft's "hidden" form is only base64 and
protects nothing, and the ISO is readable by its owner alone. Windows 11 also needs ``firmware =
"uefi"`` (with Secure Boot and a TPM in the domain): Setup refuses it on BIOS.
"""

from __future__ import annotations

import hashlib
import io
import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from pathlib import Path

from core.errors import InvalidInput
from core.names import check_username, check_vm_name
from core.provision.passwords import check_windows_password

UNATTEND_NS = "urn:schemas-microsoft-com:unattend"
WCM_NS = "http://schemas.microsoft.com/WMIConfig/2002/State"
ANSWER_FILE = "autounattend.xml"
VOLUME_ID = "UNATTEND"
DEFAULT_TIME_ZONE = "Romance Standard Time"  # Paris, Brussels, Madrid

# The attributes every component carries: which build of the component the settings are for.
_COMPONENT_ATTRS = {
    "processorArchitecture": "amd64",
    "publicKeyToken": "31bf3856ad364e35",
    "language": "neutral",
    "versionScope": "nonSxS",
}

# X keyboard layout (templates' ``keyboard``) -> Windows input locale "language:keyboard layout".
KEYBOARDS = {
    "fr": "040c:0000040c",  # French (France), AZERTY
    "us": "0409:00000409",  # English (United States)
    "gb": "0809:00000809",  # English (United Kingdom)
    "de": "0407:00000407",  # German (Germany), QWERTZ
    "be": "080c:0000080c",  # French (Belgium), Belgian AZERTY
    "ch": "0807:00000807",  # German (Switzerland): X's default "ch" is the Swiss German layout
    "es": "0c0a:0000040a",  # Spanish (Spain)
    "it": "0410:00000410",  # Italian
}

# ll_CC with an optional codeset; a modifier (@latin, @euro) has no faithful Windows equivalent.
_LOCALE = re.compile(r"^(?P<language>[a-z]{2,3})_(?P<region>[A-Z]{2})(?:\.[A-Za-z0-9-]+)?$")
# NetBIOS computer name: at most 15, letters, digits and '-', not ending with '-' (nor all digits).
_COMPUTER_NAME = re.compile(r"^[A-Za-z0-9](?:[A-Za-z0-9-]{0,13}[A-Za-z0-9])?$")
# Windows time zone ids as ``tzutil /l`` lists them ("Romance Standard Time", "UTC-11", "..._dstoff").
_TIME_ZONE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9 .()+_-]{0,63}$")
# Characters XML 1.0 cannot carry, plus the other control characters: none belongs in a name.
_NOT_TEXT = re.compile("[\x00-\x1f\x7f-\x9f\ud800-\udfff\ufffe\uffff]")

_WINDOWS_USERNAME_MAX = 20  # the SAM account name limit
_FULL_NAME_MAX = 256
# Built-in accounts, and the built-in local groups a lowercase one-word name can clash with: a
# user may not be named like any other user or group of the computer.
_RESERVED_USERNAMES = frozenset({"administrator", "guest", "defaultaccount", "wdagutilityaccount",
                                 "defaultuser0", "administrators", "users", "guests", "replicator",
                                 "iis_iusrs"})
_FIRMWARES = ("bios", "uefi")


@dataclass(frozen=True)
class WindowsSeed:
    """What one Windows VM's answer file says.

    ``admin_password`` is the built-in Administrator's, random per VM (``generate_password()``);
    ``password`` is the student's own. ``computer_name`` is at most 15 characters: make it with
    ``computer_name(vm_name)``. ``image_index`` picks the edition in the ISO's ``install.wim``
    (1 on single-edition media such as evaluation ISOs). ``firmware`` chooses the partition layout.
    """

    computer_name: str
    username: str
    full_name: str
    password: str
    admin_password: str
    keyboard: str = "fr"
    locale: str = "fr_FR.UTF-8"
    time_zone: str = DEFAULT_TIME_ZONE
    firmware: str = "bios"
    image_index: int = 1


def computer_name(vm_name: str) -> str:
    """A valid Windows computer name for a VM: the VM name itself when it fits, else a short form.

    The short form is the first 10 characters, '-', and 4 hex digits of the SHA-256 of the full
    name: deterministic, and distinct for two long names that share a prefix. An all-digit name,
    which NetBIOS refuses, gets the same treatment.
    """
    check_vm_name(vm_name)
    if len(vm_name) <= 15 and not vm_name.isdigit():
        return vm_name
    digest = hashlib.sha256(vm_name.encode("ascii")).hexdigest()[:4]
    return f"{vm_name[:10]}-{digest}"


def windows_language(locale: str) -> str:
    """``fr_FR.UTF-8`` -> ``fr-FR``: the form UILanguage, SystemLocale and UserLocale take."""
    match = _LOCALE.fullmatch(locale)
    if match is None:
        raise InvalidInput(f"locale {locale!r} has no Windows equivalent: expected a form like 'fr_FR.UTF-8'")
    return f"{match['language']}-{match['region']}"


def input_locale(keyboard: str) -> str:
    """An X keyboard layout as a Windows input locale (``fr`` -> ``040c:0000040c``)."""
    try:
        return KEYBOARDS[keyboard]
    except KeyError:
        raise InvalidInput(f"keyboard layout {keyboard!r} has no Windows equivalent here; known: "
                           f"{', '.join(sorted(KEYBOARDS))}") from None


def windows_username_problem(username: str, computer_name: str | None = None) -> str | None:
    """Why Windows would refuse a local account named ``username`` (already a valid username), or None.

    The rules of the answer file, checked again where a class is validated (the roster, the plan)
    so that a bad row is refused before anything is made. ``computer_name``, when known, must differ.
    """
    if len(username) > _WINDOWS_USERNAME_MAX or username.endswith("."):
        return (f"invalid username {username!r} for Windows: at most {_WINDOWS_USERNAME_MAX} "
                "characters, not ending with '.'")
    if username.casefold() in _RESERVED_USERNAMES:
        return f"invalid username {username!r}: a built-in Windows account or group"
    if computer_name is not None and username.casefold() == computer_name.casefold():
        return (f"invalid username {username!r}: Windows refuses a user named like the computer "
                f"({computer_name})")
    return None


def windows_full_name_problem(full_name: str) -> str | None:
    """Why Windows (or the answer file's XML) cannot carry ``full_name`` as a display name, or None."""
    if _NOT_TEXT.search(full_name):
        return "the full name holds a control character"
    if len(full_name) > _FULL_NAME_MAX:
        return f"full name too long for Windows: at most {_FULL_NAME_MAX} characters"
    return None


def _check_seed(seed: WindowsSeed) -> None:
    """Refuse, naming the problem, any value Windows Setup would refuse or XML could not carry."""
    for what, password in (("the student's password", seed.password),
                            ("the Administrator password", seed.admin_password)):
        _check_text(password, what)
        try:
            check_windows_password(password)
        except InvalidInput as exc:
            raise InvalidInput(f"{what}: {exc.message}") from None
    if not _COMPUTER_NAME.fullmatch(seed.computer_name) or seed.computer_name.isdigit():
        raise InvalidInput(f"invalid Windows computer name {seed.computer_name!r}: letters, digits and "
                           "'-', at most 15, not all digits, not starting or ending with '-'")
    check_username(seed.username)
    for problem in (windows_username_problem(seed.username, seed.computer_name),
                    windows_full_name_problem(seed.full_name)):
        if problem is not None:
            raise InvalidInput(problem)
    input_locale(seed.keyboard)
    windows_language(seed.locale)
    if not _TIME_ZONE.fullmatch(seed.time_zone):
        raise InvalidInput(f"invalid Windows time zone {seed.time_zone!r}: an id as 'tzutil /l' lists "
                           "them, such as 'Romance Standard Time'")
    if seed.firmware not in _FIRMWARES:
        raise InvalidInput(f"invalid firmware {seed.firmware!r}: one of {', '.join(_FIRMWARES)}")
    if type(seed.image_index) is not int or seed.image_index < 1:
        raise InvalidInput(f"invalid image index {seed.image_index!r}: a whole number from 1")


def answer_file(seed: WindowsSeed) -> bytes:
    """The ``autounattend.xml`` document: UTF-8, with its XML declaration."""
    _check_seed(seed)
    language = windows_language(seed.locale)
    keyboard = input_locale(seed.keyboard)
    root = ET.Element(_q("unattend"))

    windows_pe = ET.SubElement(root, _q("settings"), {"pass": "windowsPE"})
    intl = _component(windows_pe, "Microsoft-Windows-International-Core-WinPE")
    _sub(_sub(intl, "SetupUILanguage"), "UILanguage", language)
    _locales(intl, keyboard, language)
    setup = _component(windows_pe, "Microsoft-Windows-Setup")
    windows_partition = _disk_configuration(setup, seed.firmware)
    image = _sub(_sub(setup, "ImageInstall"), "OSImage")
    metadata = _sub(_sub(image, "InstallFrom"), "MetaData", add=True)
    _sub(metadata, "Key", "/IMAGE/INDEX")
    _sub(metadata, "Value", str(seed.image_index))
    install_to = _sub(image, "InstallTo")
    _sub(install_to, "DiskID", "0")
    _sub(install_to, "PartitionID", str(windows_partition))
    user_data = _sub(setup, "UserData")
    # The all-zero key with OnError: no key page, the edition comes from the image index.
    product_key = _sub(user_data, "ProductKey")
    _sub(product_key, "Key", "00000-00000-00000-00000-00000")
    _sub(product_key, "WillShowUI", "OnError")
    _sub(user_data, "AcceptEula", "true")

    specialize = ET.SubElement(root, _q("settings"), {"pass": "specialize"})
    shell = _component(specialize, "Microsoft-Windows-Shell-Setup")
    _sub(shell, "ComputerName", seed.computer_name)
    _sub(shell, "TimeZone", seed.time_zone)

    oobe_system = ET.SubElement(root, _q("settings"), {"pass": "oobeSystem"})
    _locales(_component(oobe_system, "Microsoft-Windows-International-Core"), keyboard, language)
    shell = _component(oobe_system, "Microsoft-Windows-Shell-Setup")
    oobe = _sub(shell, "OOBE")
    for page in ("HideEULAPage", "HideLocalAccountScreen", "HideOEMRegistrationScreen",
                 "HideOnlineAccountScreens", "HideWirelessSetupInOOBE"):
        _sub(oobe, page, "true")
    _sub(oobe, "ProtectYourPC", "3")  # no recommended settings sent to Microsoft
    accounts = _sub(shell, "UserAccounts")
    _password(accounts, "AdministratorPassword", seed.admin_password)
    account = _sub(_sub(accounts, "LocalAccounts"), "LocalAccount", add=True)
    _password(account, "Password", seed.password)
    if seed.full_name:
        _sub(account, "DisplayName", seed.full_name)
    # The language-neutral name: Setup maps it to the localized group ("Administrateurs").
    _sub(account, "Group", "Administrators")
    _sub(account, "Name", seed.username)

    ET.indent(root, space="  ")
    # The unattend namespace as the default one, wcm as Setup's own files spell it. ElementTree's
    # prefix registry is process-wide (and its default_namespace option refuses unprefixed
    # attributes), so the prefixes are (re)claimed right before each serialization.
    ET.register_namespace("", UNATTEND_NS)
    ET.register_namespace("wcm", WCM_NS)
    document: bytes = ET.tostring(root, encoding="utf-8", xml_declaration=True)
    return document + b"\n"


def write_windows_seed_iso(path: Path, seed: WindowsSeed) -> None:
    """Write the answer-file ISO to ``path``, readable only by its owner (it holds passwords).

    The file is named for all three directory schemes (ISO 9660, Joliet, Rock Ridge): Windows
    Setup reads Joliet, other tools the others.
    """
    data = answer_file(seed)
    import pycdlib  # here, not at the top: the TUI's start never needs it

    iso = pycdlib.PyCdlib()
    iso.new(interchange_level=3, joliet=3, rock_ridge="1.09", vol_ident=VOLUME_ID)
    iso.add_fp(io.BytesIO(data), len(data), f"/{ANSWER_FILE.upper()};1", rr_name=ANSWER_FILE,
               joliet_path=f"/{ANSWER_FILE}")
    try:
        path.touch(mode=0o600, exist_ok=False)
        try:
            iso.write(str(path))
        except BaseException:
            path.unlink()
            raise
    finally:
        iso.close()


def read_answer_file(path: Path) -> bytes:
    """The ``autounattend.xml`` of an answer-file ISO, as Windows sees it (Joliet), without mounting."""
    import pycdlib  # here, not at the top: the TUI's start never needs it

    iso = pycdlib.PyCdlib()
    iso.open(str(path))
    try:
        out = io.BytesIO()
        iso.get_file_from_iso_fp(out, joliet_path=f"/{ANSWER_FILE}")
        return out.getvalue()
    finally:
        iso.close()


def _check_text(value: str, what: str) -> None:
    if _NOT_TEXT.search(value):
        raise InvalidInput(f"{what} holds a control character")


def _q(tag: str) -> str:
    return f"{{{UNATTEND_NS}}}{tag}"


def _sub(parent: ET.Element, tag: str, text: str | None = None, *, add: bool = False) -> ET.Element:
    """A child element; ``add`` marks a list item (``wcm:action="add"``), as Setup requires."""
    element = ET.SubElement(parent, _q(tag), {f"{{{WCM_NS}}}action": "add"} if add else {})
    element.text = text
    return element


def _component(settings: ET.Element, name: str) -> ET.Element:
    return ET.SubElement(settings, _q("component"), {"name": name, **_COMPONENT_ATTRS})


def _locales(component: ET.Element, keyboard: str, language: str) -> None:
    _sub(component, "InputLocale", keyboard)
    _sub(component, "SystemLocale", language)
    _sub(component, "UILanguage", language)
    _sub(component, "UserLocale", language)


def _password(parent: ET.Element, tag: str, password: str) -> None:
    element = _sub(parent, tag)
    _sub(element, "Value", password)
    _sub(element, "PlainText", "true")


def _disk_configuration(setup: ET.Element, firmware: str) -> int:
    """Wipe disk 0 and partition it; returns the number of the partition Windows goes on.

    BIOS: MBR, one active NTFS partition. UEFI cannot boot from that: GPT with an EFI system
    partition (260 MB, enough for 4K-sector disks), the MSR Windows wants, then Windows.
    """
    disk = _sub(_sub(setup, "DiskConfiguration"), "Disk", add=True)
    _sub(disk, "DiskID", "0")
    _sub(disk, "WillWipeDisk", "true")
    # (type, size in MB or None for "the rest", format, label, letter, active)
    layout: list[tuple[str, int | None, str | None, str, str | None, bool]]
    if firmware == "uefi":
        layout = [("EFI", 260, "FAT32", "System", None, False), ("MSR", 16, None, "", None, False),
                  ("Primary", None, "NTFS", "Windows", "C", False)]
    else:
        layout = [("Primary", None, "NTFS", "Windows", "C", True)]
    create = _sub(disk, "CreatePartitions")
    for order, (kind, size, *_) in enumerate(layout, 1):
        partition = _sub(create, "CreatePartition", add=True)
        _sub(partition, "Order", str(order))
        _sub(partition, "Type", kind)
        if size is None:
            _sub(partition, "Extend", "true")
        else:
            _sub(partition, "Size", str(size))
    modify = _sub(disk, "ModifyPartitions")
    formatted = [(number, spec) for number, spec in enumerate(layout, 1) if spec[2] is not None]
    for order, (number, (_, _, fs, label, letter, active)) in enumerate(formatted, 1):
        partition = _sub(modify, "ModifyPartition", add=True)
        _sub(partition, "Order", str(order))
        _sub(partition, "PartitionID", str(number))
        _sub(partition, "Format", fs)
        _sub(partition, "Label", label)
        if letter is not None:
            _sub(partition, "Letter", letter)
        if active:
            _sub(partition, "Active", "true")
    return len(layout)
