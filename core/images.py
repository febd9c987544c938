"""What a disk image is backed by, read from the image itself.

libvirt reports a disk's ``<backingStore>`` chain only for running domains, so deciding whether
a file is somebody's backing file needs the images' own headers. ``qemu-img info --backing-chain``
would answer too, at about 15 ms a process; a bulk delete checks every disk on the host, so the
few bytes of the qcow2 header are read here instead (about 50 µs an image).
"""

from __future__ import annotations

import os
import struct

QCOW2_MAGIC = b"QFI\xfb"
_MAX_DEPTH = 32


class UnreadableImage(OSError):
    """The image (or one of its backing files) could not be read."""


def backing_file(path: str) -> str | None:
    """The backing file named in a qcow2 header (made absolute), or None (raw, or no backing)."""
    try:
        with open(path, "rb") as image:
            header = image.read(20)
            if len(header) < 20 or header[:4] != QCOW2_MAGIC:
                return None
            offset, size = struct.unpack(">QI", header[8:20])
            if offset == 0 or size == 0:
                return None
            image.seek(offset)
            name = image.read(size).decode("utf-8", "surrogateescape")
    except FileNotFoundError:
        return None
    except OSError as exc:
        raise UnreadableImage(exc.errno, f"cannot read {path}: {exc.strerror}") from exc
    if "://" in name or name.startswith(("json:", "nbd:", "rbd:")):
        return name  # a network backing store: a name, not a file of ours
    return os.path.normpath(os.path.join(os.path.dirname(path), name))


def backing_chain(path: str) -> list[str]:
    """Every backing file below ``path``, nearest first."""
    chain: list[str] = []
    current: str | None = path
    while current is not None and len(chain) < _MAX_DEPTH:
        current = backing_file(current)
        if current is not None:
            chain.append(current)
    return chain
