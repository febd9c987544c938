"""What only tests, benchmarks, screenshots and the demo generator use: test-driver lab files, tiny
domains, and the guest agent's commands for reading a booted guest. The product never imports it
(fault points, which the product calls, are :mod:`core.failpoints`)."""
