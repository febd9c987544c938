import xml.etree.ElementTree as ET

from core import metadata
from core.metadata import LabMeta


def test_round_trip_through_domain_xml() -> None:
    meta = LabMeta("alice", "net101", "debian12", "2026-11-24T09:00:00Z")
    domain = ET.fromstring(
        f'<domain><metadata><lab:vm xmlns:lab="{metadata.NAMESPACE}">'
        "<lab:owner>alice</lab:owner><lab:class>net101</lab:class>"
        "<lab:template>debian12</lab:template><lab:created>2026-11-24T09:00:00Z</lab:created>"
        "</lab:vm></metadata></domain>")
    assert metadata.from_domain(domain) == meta
    assert metadata.parse_element(meta.to_xml()) == meta


def test_special_characters_are_escaped_not_interpreted() -> None:
    meta = LabMeta(owner='<x>&"\'', lab_class="]]><evil/>")
    xml = meta.to_xml()
    assert "<evil/>" not in xml
    assert metadata.parse_element(xml) == meta


def test_foreign_or_broken_metadata_reads_as_empty() -> None:
    assert metadata.parse_element("<not-closed>") == LabMeta()
    assert metadata.parse_element(None) == LabMeta()
    other_ns = ET.fromstring('<domain><metadata><x:vm xmlns:x="urn:other"><x:owner>eve</x:owner>'
                             "</x:vm></metadata></domain>")
    assert metadata.from_domain(other_ns) == LabMeta()


def test_merged_keeps_unset_fields() -> None:
    meta = LabMeta("alice", "net101", "debian12")
    assert meta.merged(owner="bob", lab_class=None) == LabMeta("bob", "net101", "debian12")
