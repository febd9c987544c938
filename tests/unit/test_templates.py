"""templates.toml: parsing, refusing bad files as a whole, and what QEMU can read."""

import json
from pathlib import Path

import pytest
from support.cli import vm_manager

from core.errors import ConfigError
from core.provision.templates import check_files, load_templates
from core.storage.permissions import QEMU_USER, readable_by

GOOD = """
[templates.tiny]
kernel = "tiny/vmlinuz"
initrd = "/abs/initrd.img"
cmdline = "console=ttyS0"
domain_type = "qemu"
memory_mib = 128

[templates.win11]
os = "windows"
image = "win11.qcow2"
firmware = "uefi"
network = "bridge:br0"
"""


def test_good_file(tmp_path: Path) -> None:
    (tmp_path / "templates.toml").write_text(GOOD)
    found = load_templates(tmp_path / "templates.toml", tmp_path / "tpl")
    assert set(found) == {"tiny", "win11"}
    tiny = found["tiny"]
    assert tiny.kernel == tmp_path / "tpl" / "tiny" / "vmlinuz"  # relative to the templates dir
    assert tiny.initrd == Path("/abs/initrd.img")
    assert (tiny.domain_type, tiny.memory_mib, tiny.machine, tiny.keyboard) == ("qemu", 128, "pc", "fr")
    assert found["win11"].os == "windows"
    assert found["win11"].firmware == "uefi"


def test_no_file_means_no_templates(tmp_path: Path) -> None:
    assert load_templates(tmp_path / "none.toml", tmp_path) == {}


def test_a_bad_file_is_refused_whole_with_every_problem(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text(GOOD + """
[templates."../evil"]
kernel = "x"

[templates.bad]
os = "plan9"
vcpus = 0
colour = "red"
network = "wifi"
""")
    with pytest.raises(ConfigError) as caught:
        load_templates(tmp_path / "t.toml", tmp_path)
    message = caught.value.message
    for expected in ("[templates.../evil]: a template name", "os must be one of linux, windows",
                     "vcpus must be a whole number", "unknown setting 'colour'",
                     "network must be none", "[templates.bad]: needs an image, or a kernel"):
        assert expected in message, message


def test_broken_toml_names_the_file(tmp_path: Path) -> None:
    (tmp_path / "t.toml").write_text("[templates.x\nkernel=")
    with pytest.raises(ConfigError, match="t.toml"):
        load_templates(tmp_path / "t.toml", tmp_path)


def test_readable_by_qemu_needs_every_parent_to_let_it_pass(world_dir: Path) -> None:
    tmp_path = world_dir
    closed = tmp_path / "closed"
    open_ = tmp_path / "open"
    for folder, mode in ((closed, 0o700), (open_, 0o755)):
        folder.mkdir()
        (folder / "vmlinuz").write_bytes(b"kernel")
        (folder / "vmlinuz").chmod(0o644)
        folder.chmod(mode)
    if readable_by(tmp_path, QEMU_USER).startswith("no user"):
        pytest.fail("libvirt's QEMU user is missing: make test installs libvirt-daemon-system")
    if readable_by(open_ / "vmlinuz", QEMU_USER):
        pytest.fail(f"the test folder itself is closed to {QEMU_USER}: {readable_by(open_, QEMU_USER)}")
    assert readable_by(closed / "vmlinuz", QEMU_USER) == f"{QEMU_USER} cannot enter {closed}"
    assert readable_by(open_ / "nothing", QEMU_USER) == "missing"
    (open_ / "vmlinuz").chmod(0o600)
    assert "cannot read it" in readable_by(open_ / "vmlinuz", QEMU_USER)


def test_check_files_and_the_cli(tmp_path: Path) -> None:
    config, tpl = tmp_path / "config", tmp_path / "tpl"
    config.mkdir()
    (tpl / "tiny").mkdir(parents=True)
    (tpl / "tiny" / "vmlinuz").write_bytes(b"k")
    (config / "templates.toml").write_text('[templates.tiny]\nkernel = "tiny/vmlinuz"\n'
                                           'initrd = "tiny/initrd.img"\n')
    template = load_templates(config / "templates.toml", tpl)["tiny"]
    problems = {c.role: c.problem for c in check_files(template)}
    assert problems["initrd"] == "missing"

    env = {"HOME": str(tmp_path), "VMM_CONFIG_DIR": str(config), "VMM_TEMPLATE_DIR": str(tpl),
           "VMM_DATA_DIR": str(tmp_path)}
    out = vm_manager("templates", "--json", **env)
    assert out.returncode == 1, out.stderr  # a file is missing
    (row,) = json.loads(out.stdout)
    assert row["name"] == "tiny"
    assert row["files"]["initrd"]["problem"] == "missing"
    (tpl / "tiny" / "initrd.img").write_bytes(b"i")
    out = vm_manager("templates", **env)
    assert "initrd" in out.stdout
    assert out.returncode == (1 if "cannot" in out.stdout else 0), out.stdout
