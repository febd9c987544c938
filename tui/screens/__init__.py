"""Full screens of the TUI: the VM list, detail, confirmation, help, connection error."""
