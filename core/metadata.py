"""The project's own element in a domain's ``<metadata>``: who owns a VM and where it came from.

Written by provisioning and by ``vm-manager assign``; read by the inventory. Example::

    <metadata>
      <lab:vm xmlns:lab="https://vm-manager.dev/xmlns/lab/1">
        <lab:owner>alice</lab:owner>
        <lab:class>net101</lab:class>
        <lab:template>debian12</lab:template>
        <lab:created>2026-11-24T09:00:00Z</lab:created>
      </lab:vm>
    </metadata>

libvirt keys custom metadata by namespace URI; the ``lab`` prefix is what it writes back.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from dataclasses import dataclass, replace

NAMESPACE = "https://vm-manager.dev/xmlns/lab/1"
PREFIX = "lab"
ROOT = "vm"
_FIELDS = {"owner": "owner", "class": "lab_class", "template": "template", "created": "created"}


@dataclass(frozen=True, slots=True)
class LabMeta:
    """Ownership and origin of one VM; an empty string means "not set"."""

    owner: str = ""
    lab_class: str = ""
    template: str = ""
    created: str = ""

    def merged(self, **changes: str | None) -> LabMeta:
        """A copy with the given fields replaced; ``None`` keeps the old value."""
        return replace(self, **{k: v for k, v in changes.items() if v is not None})

    def to_xml(self) -> str:
        """The element to hand to ``virDomainSetMetadata`` (prefix and namespace added by libvirt)."""
        root = ET.Element(ROOT)
        for tag, attr in _FIELDS.items():
            value = getattr(self, attr)
            if value:
                ET.SubElement(root, tag).text = value
        return ET.tostring(root, encoding="unicode")


    def to_element(self) -> ET.Element:
        """Our element in its namespace, for embedding in a whole domain document."""
        element = ET.fromstring(self.to_xml())
        for node in element.iter():
            node.tag = f"{{{NAMESPACE}}}{node.tag}"
        return element


ET.register_namespace(PREFIX, NAMESPACE)


def parse_element(xml: str | None) -> LabMeta:
    """Parse the element as ``virDomainGetMetadata`` returns it (no namespace on its tags)."""
    if not xml:
        return LabMeta()
    try:
        root = ET.fromstring(xml)
    except ET.ParseError:
        return LabMeta()
    return _from_element(root, "")


def from_domain(root: ET.Element) -> LabMeta:
    """Read our element out of a parsed domain XML document (``<domain>`` root)."""
    element = root.find(f"metadata/{{{NAMESPACE}}}{ROOT}")
    if element is None:
        return LabMeta()
    return _from_element(element, f"{{{NAMESPACE}}}")


def _from_element(element: ET.Element, ns: str) -> LabMeta:
    values = {attr: (element.findtext(ns + tag) or "").strip() for tag, attr in _FIELDS.items()}
    return LabMeta(**values)
