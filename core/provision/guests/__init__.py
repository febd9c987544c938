"""What a guest reads at its first boot: :mod:`linux` (cloud-init NoCloud seeds), :mod:`windows`
(answer files and the names Windows accepts), :mod:`answer_cd` (the answer file's CD, ejected once
the VM has run)."""
