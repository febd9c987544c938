"""Run Python code as another user (``nobody``), from any checkout.

A checkout or a Python under /root (mode 0700) is out of another user's reach: that user could not
even start the interpreter. So the process starts as root, imports what the code needs (the
``prelude``), and only then drops to the user for good, before the code runs.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

_DROP = """
import grp as _grp, os as _os, pwd as _pwd
_os.setgroups([])
_os.setgid(_grp.getgrnam({group!r}).gr_gid)
_os.setuid(_pwd.getpwnam({user!r}).pw_uid)
assert _os.getuid() != 0 and _os.geteuid() != 0
"""


def python_as(prelude: str, code: str, *, user: str = "nobody", group: str = "nogroup",
              **run: Any) -> subprocess.CompletedProcess[str]:
    """Run ``prelude`` as root (imports only), then ``code`` as ``user`` (no supplementary groups)."""
    script = f"{prelude}\n{_DROP.format(user=user, group=group)}\n{code}\n"
    return subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, check=False,
                          **run)
