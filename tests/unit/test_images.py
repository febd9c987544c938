"""Backing chains read from real qcow2 images made by qemu-img."""

import subprocess
from pathlib import Path

import pytest

from core.storage import images


def qemu_img(*args: str) -> None:
    subprocess.run(["qemu-img", *args], check=True, capture_output=True)


def test_chain_of_an_overlay_of_an_overlay(tmp_path: Path) -> None:
    base, mid, top = tmp_path / "base.qcow2", tmp_path / "sub" / "mid.qcow2", tmp_path / "top.qcow2"
    mid.parent.mkdir()
    qemu_img("create", "-f", "qcow2", str(base), "16M")
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", str(base), str(mid))
    # A relative backing name is relative to the overlay's own folder.
    qemu_img("create", "-f", "qcow2", "-F", "qcow2", "-b", "sub/mid.qcow2", str(top))
    assert images.backing_chain(str(top)) == [str(mid), str(base)]
    assert images.backing_chain(str(base)) == []


def test_raw_and_missing_files_have_no_chain(tmp_path: Path) -> None:
    raw = tmp_path / "disk.img"
    qemu_img("create", "-f", "raw", str(raw), "1M")
    assert images.backing_chain(str(raw)) == []
    assert images.backing_chain(str(tmp_path / "gone.qcow2")) == []


def test_unreadable_image_is_an_error_not_an_empty_chain(tmp_path: Path) -> None:
    folder = tmp_path / "locked"
    folder.mkdir()
    (folder / "x.qcow2").write_bytes(b"QFI\xfb")
    with pytest.raises(images.UnreadableImage):
        images.backing_chain(str(folder))  # a directory cannot be read as an image
