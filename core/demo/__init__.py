"""The built-in demo lab: ``lab.xml``, a file of libvirt's test driver (written by
``python -m core.testing.testdriver``), opened when no hypervisor answers."""
