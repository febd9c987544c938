"""Properties of every parser of outside input (Hypothesis), one test module per parser.

Each module feeds its parser what a file, a form, a command line or the hypervisor could hold:
valid input, input near valid, and garbage; the property is always that bad input gets a clear
error of the project's own kind (:class:`core.errors.VMManagerError` and its kin) and changes
nothing, never a traceback. What the strategies share (hostile text: terminal escapes, Rich
markup, HTML, bidi controls) is in :mod:`fuzz.strategies`.

- ``test_roster.py``     roster CSV (``core/provision/roster.py``)
- ``test_query.py``      the filter language (``core/query.py``)
- ``test_templates.py``  ``templates.toml`` (``core/provision/templates.py``)
- ``test_keymap.py``     ``keymap.toml`` (``tui/keymap.py``)
- ``test_settings.py``   every settings value, durations (``core/settings.py``, ``--since``, ``--timeout``,
  ``--serve``, ``PUBLIC_URL``)
- ``test_links.py``      share tokens, link ids and share URLs (``core/links/``)
- ``test_names.py``      names (``core/names.py``) and sign-in (``core/auth/signin.py``, local accounts)
- ``test_portal.py``     the portal's forms and query strings, through aiohttp's test client
- ``test_domainxml.py``  domain XML the reader reads, defined in libvirt's test driver
- ``test_shown.py``      VM and owner names shown by the TUI, the CLI and the pages: never interpreted

A new parser of outside input gets a module of its own here (``hosts.toml``: ``test_hosts.py``, its
file's strategy beside the others in :mod:`fuzz.strategies`). The profiles (``ci``: 200
derandomised examples a property, ``make test``; ``soak``: 5,000, ``VMM_FUZZ_PROFILE=soak``) are
registered in ``tests/conftest.py``.
"""
