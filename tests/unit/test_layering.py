"""core never imports Textual or tui; tui never imports libvirt itself."""

import ast
import pkgutil
import subprocess
import sys

from support.cli import CHECKOUT

import core


def core_modules() -> list[str]:
    return [m.name for m in pkgutil.walk_packages(core.__path__, "core.")]


def test_core_modules_load_without_textual_or_tui() -> None:
    modules = core_modules()
    assert "core.lab" in modules
    assert "core.virt.inventory" in modules
    code = ("import importlib, sys\n"
            f"for name in {modules!r}: importlib.import_module(name)\n"
            "bad = sorted(m for m in sys.modules if m.split('.')[0] in ('textual', 'rich', 'tui'))\n"
            "print(','.join(bad))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == ""


def test_tui_never_imports_libvirt() -> None:
    offenders = []
    for path in (CHECKOUT / "tui").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.name}: {n}" for n in names if n.split(".")[0] in ("libvirt", "libvirtaio")]
    assert offenders == []


def test_cli_commands_do_not_load_textual() -> None:
    code = "import sys, tui.cli; print('textual' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "False"


def test_starting_up_loads_neither_making_vms_nor_mail() -> None:
    """The CLI and the TUI import the lab at start-up; making VMs and sending mail load when used."""
    code = ("import sys, tui.cli, core.lab, core.provision, core.records\n"
            "from core.provision import Template, AUTO\n"
            "print(sorted(m for m in ('core.provision.execution', 'core.provision.doctor', 'smtplib')"
            " if m in sys.modules))\n"
            "from core.provision import execute\n"
            "print('core.provision.execution' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.split("\n")[:2] == ["[]", "True"]


def test_provisionings_lazy_face_offers_every_name_it_lists() -> None:
    import core.provision as face
    assert sorted(face.__all__) == sorted(face._HOMES)
    assert all(getattr(face, name) is not None for name in face.__all__)
    assert face.plan.__module__ == "core.provision.planning"
