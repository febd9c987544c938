from core.virt import domainxml

XML = """
<domain type='qemu'>
  <name>net101-alice</name>
  <uuid>6695eb01-f6a4-8304-79aa-97f2502e193f</uuid>
  <memory unit='GiB'>2</memory>
  <currentMemory unit='KiB'>1048576</currentMemory>
  <vcpu placement='static' current='2'>4</vcpu>
  <devices>
    <disk type='file' device='disk'>
      <source file='/srv/student_vms/alice/net101-alice/disk.qcow2'/>
      <backingStore type='file'><format type='qcow2'/>
        <source file='/srv/templates/debian12.qcow2'/><backingStore/></backingStore>
      <target dev='vda' bus='virtio'/>
    </disk>
    <disk type='file' device='cdrom'>
      <source file='/srv/seed.iso'/><target dev='hdc' bus='ide'/><readonly/>
    </disk>
    <disk type='volume' device='disk'>
      <source pool='default' volume='data.qcow2'/><target dev='vdb'/><shareable/>
    </disk>
    <interface type='network'>
      <mac address='52:54:00:aa:bb:cc'/><source network='lab'/><model type='virtio'/>
      <target dev='vnet3'/>
    </interface>
    <graphics type='vnc' port='5901' autoport='yes' listen='127.0.0.1'>
      <listen type='address' address='127.0.0.1'/>
    </graphics>
    <graphics type='vnc' port='-1'>
      <listen type='socket' socket='/run/vmm/vnc/alice.sock'/>
    </graphics>
  </devices>
</domain>
"""


def test_parse_reads_sizes_devices_and_chain() -> None:
    info = domainxml.parse(XML)
    assert (info.name, info.domain_type, info.vcpus, info.memory_mib) == ("net101-alice", "qemu", 2, 1024)
    disk, cdrom, volume = info.disks
    assert disk.backing == ("/srv/templates/debian12.qcow2",)
    assert not disk.readonly
    assert cdrom.readonly
    assert cdrom.device == "cdrom"
    assert volume.source == "default/data.qcow2"
    assert volume.shareable
    (nic,) = info.interfaces
    assert (nic.mac, nic.kind, nic.source, nic.model, nic.target) == (
        "52:54:00:aa:bb:cc", "network", "lab", "virtio", "vnet3")
    tcp, sock = info.graphics
    assert (tcp.listen, tcp.port, tcp.socket) == ("127.0.0.1", 5901, "")
    assert (sock.listen, sock.port, sock.socket) == ("/run/vmm/vnc/alice.sock", None,
                                                     "/run/vmm/vnc/alice.sock")


def test_memory_without_current_memory_uses_memory() -> None:
    info = domainxml.parse("<domain><name>x</name><memory unit='MiB'>512</memory><vcpu>1</vcpu></domain>")
    assert info.memory_mib == 512
    assert info.vcpus == 1
