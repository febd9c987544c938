"""What the tests share: real services and the ways to drive them.

``livelab`` (a real libvirtd: the outside world, tiny domains, event-driven waits), ``webtest``
and ``portalweb`` (the console server and the portal in-process, their clients), ``consolelab``
(``vm-manager serve`` as a process, Chromium), ``tuitest`` (the app under Pilot), ``slapd`` and
``tlsca`` (a throwaway OpenLDAP and CA), ``smtp`` (a real SMTP server), ``cli`` (the
``vm-manager`` command as a process), ``clock`` (a clock tests move), ``asuser`` (code run as
another user), ``unixsock`` and ``leftovers`` (what a test may leave behind). pytest puts
``tests/`` on the path (``pythonpath`` in pyproject.toml).
"""
