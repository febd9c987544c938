"""The built-in demo lab: ``lab.xml``, a file of libvirt's test driver (written by
``python -m core.testing.testdriver``), opened when no hypervisor answers.

The demo runs on settings of its own (:func:`demo_settings`): a scratch folder for its database
(so its share links, requests and audit entries never reach the real ones), the templates of
``templates.toml`` here, and a throwaway SECRET_KEY made for this run (its links work only while
it runs). Provisioning on it defines domains in the test driver's memory and makes no file
(see :mod:`core.provision.execution`).
"""

from __future__ import annotations

import dataclasses
import secrets
import shutil
import tempfile
from pathlib import Path

from core.settings import Settings

DEMO_DIR = Path(__file__).parent
DEMO_NOTE = "demo: links work only while this runs"


def demo_settings(settings: Settings) -> tuple[Settings, Path]:
    """The demo's settings and its scratch folder (mode 0700; :func:`remove_scratch` removes it).

    Everything the demo writes goes under the scratch folder: the database (links, audit,
    requests), the passwords files, the server's sockets. Its templates are those of
    ``templates.toml`` here; the operator's other settings stay (the TUI's keymap is read from
    the operator's own settings, not these).
    """
    scratch = Path(tempfile.mkdtemp(prefix="vm-manager-demo-"))
    demo = dataclasses.replace(  # the config folder is this one: its templates.toml
        settings, data_dir=scratch / "data", config_dir=DEMO_DIR, template_dir=DEMO_DIR,
        runtime_dir=scratch / "run", log_file=settings.log_path,
        provision=dataclasses.replace(settings.provision, student_vms_dir=scratch / "student_vms"),
        consoles=dataclasses.replace(settings.consoles, socket_dir=scratch / "consoles"),
        web=dataclasses.replace(settings.web, secret_key=secrets.token_urlsafe(48)))
    return demo, scratch


def remove_scratch(scratch: Path) -> None:
    shutil.rmtree(scratch, ignore_errors=True)
