"""Widgets of the main screen: the VM table, header, status line and event log."""
