"""NoCloud seeds: built with real libraries, read back without mounting."""

import os
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml

from core.errors import InvalidInput
from core.provision.guests.linux import (
    LinuxSeed,
    SeedUser,
    gecos_problem,
    read_seed_iso,
    user_data,
    write_seed_iso,
)


def seed(**user: object) -> LinuxSeed:
    fields = {"username": "alice", "full_name": "Alice Martin", "password": "S3cret!pw"} | user
    return LinuxSeed("net101-alice", "iid-123", SeedUser(**fields))  # type: ignore[arg-type]


def test_iso_reads_back_with_cloud_config(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    write_seed_iso(path, seed(ssh_keys=("ssh-ed25519 AAAA alice@lab",)))
    files = read_seed_iso(path)
    assert files["volume"] == "cidata"
    assert yaml.safe_load(files["meta-data"]) == {"instance-id": "iid-123",
                                                  "local-hostname": "net101-alice"}
    assert files["user-data"].startswith("#cloud-config\n")
    config = yaml.safe_load(files["user-data"])
    assert config["hostname"] == "net101-alice"
    assert config["keyboard"] == {"layout": "fr"}
    assert config["locale"] == "fr_FR.UTF-8"
    (user,) = config["users"]
    assert user["name"] == "alice"
    assert user["ssh_authorized_keys"] == ["ssh-ed25519 AAAA alice@lab"]
    assert user["passwd"].startswith("$6$")
    assert "S3cret" not in files["user-data"]
    assert path.stat().st_mode & 0o077 == 0  # holds a password hash: owner only


def test_the_hash_is_a_real_sha512_crypt_of_the_password(tmp_path: Path) -> None:
    hashed = yaml.safe_load(user_data(seed()).split("\n", 1)[1])["users"][0]["passwd"]
    salt = hashed.split("$")[2]
    again = subprocess.run(["openssl", "passwd", "-6", "-salt", salt, "-stdin"], input="S3cret!pw\n",
                           capture_output=True, text=True, check=True).stdout.strip()
    assert again == hashed


def test_hostile_values_stay_data() -> None:
    text = user_data(seed(full_name="Eve\nruncmd: [rm -rf /]\n#", ssh_keys=("k\nruncmd: [x]",)))
    config = yaml.safe_load(text.split("\n", 1)[1])
    assert "runcmd" not in config
    assert config["users"][0]["gecos"] == "Eve\nruncmd: [rm -rf /]\n#"


def test_bad_names_are_refused_before_anything_is_written(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    with pytest.raises(InvalidInput, match="username"):
        write_seed_iso(path, seed(username="../root"))
    with pytest.raises(InvalidInput, match="VM name"):
        write_seed_iso(path, LinuxSeed("bad name", "i", SeedUser("alice", password="x")))
    with pytest.raises(InvalidInput, match="password"):
        write_seed_iso(path, seed(password="two\nlines"))
    assert not path.exists()


def test_no_password_locks_it() -> None:
    config = yaml.safe_load(user_data(seed(password=None)).split("\n", 1)[1])
    assert config["users"][0]["lock_passwd"] is True
    assert "passwd" not in config["users"][0]
    assert config["ssh_pwauth"] is False


FULL_NAMES = ["Jean Dupont", "Dupont, Jean", "Zoé Ñúñez-Łukasz", "-x", "a=b", "O'Brien \"Bob\"",
              "#1 \\ 100%", "  spaced  ", "", "Dupont: Jean", ":", "tab\there", "del\x7f", "line\nbreak"]


@pytest.mark.skipif(os.geteuid() != 0 or shutil.which("useradd") is None,
                    reason="needs root and useradd (shadow's), to ask the real tool")
def test_the_full_name_rule_is_useradds(tmp_path: Path) -> None:
    """cloud-init runs ``useradd NAME --comment FULL_NAME``: what useradd refuses, the rule refuses.

    useradd works on a scratch root (``--prefix``), so the host's accounts are never touched."""
    etc = tmp_path / "etc"
    etc.mkdir()
    (etc / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\n")
    (etc / "group").write_text("root:x:0:\n")
    (etc / "shadow").write_text("root:*:19000:0:99999:7:::\n")
    (etc / "gshadow").write_text("root:*::\n")
    for number, name in enumerate(FULL_NAMES):
        added = subprocess.run(["useradd", "--prefix", str(tmp_path), "-M", "-l", "--comment", name,
                                f"student{number}"], capture_output=True, text=True, timeout=30)
        assert (added.returncode == 0) == (gecos_problem(name) is None), (name, added.stderr)
    assert "':'" in (gecos_problem("Dupont: Jean") or "")


def test_a_seed_useradd_would_refuse_is_not_written(tmp_path: Path) -> None:
    path = tmp_path / "seed.iso"
    with pytest.raises(InvalidInput, match="':'"):
        write_seed_iso(path, seed(full_name="Dupont: Jean"))
    assert not path.exists()
