"""Settings: any value of any variable, in the environment or the settings file, gives settings or a
ConfigError naming it; the readers of values used later (durations, ports, proxies, PUBLIC_URL, the
VM name scheme) and the command line's own (``--since``, ``--timeout``, ``--serve``) likewise."""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import tempfile
from pathlib import Path

from hypothesis import example, given
from hypothesis import strategies as st

from core.errors import ConfigError, InvalidInput
from core.links.shares import MAX_TTL, describe_ttl, parse_ttl
from core.links.urls import base_url, origin_of
from core.provision.planning import vm_name
from core.settings import (
    LOG_LEVELS,
    Settings,
    WebSettings,
    duration,
    env_names,
    load_settings,
    positive_number,
)
from core.web.console.endpoints import parse_ports
from core.web.middlewares import parse_proxies
from fuzz.strategies import hostile_text
from tui.cli.common import host_port, seconds
from tui.cli.records import parse_since

NAMES = env_names()
UNITS = {"s": 1, "m": 60, "h": 3600, "d": 86400}
NUMBERS = st.sampled_from(["0", "1", "-1", "2.5", "1e400", "nan", "inf", "-inf", "1_000", " 7 ", "0x10",
                           "١", "9" * 5000, "1e-400", "+3", "", "yes", "No", "ON", "off", "2", "auto", "kvm",
                           "debug"])
DURATIONS = st.one_of(
    st.lists(st.tuples(st.integers(0, 10**14).map(str), st.sampled_from("smhdSMHD")), min_size=1, max_size=3)
    .map(lambda parts: "".join(n + u for n, u in parts)),
    st.sampled_from(["", "h", "1", "1h 30m", "1.5h", "-1h", "1w", "0", "0s", "١h", "9" * 5000 + "s",
                     "1" + "0" * 400 + "d", " 4H ", "2d2d"]),
    hostile_text(max_size=3))
values = st.one_of(NUMBERS, DURATIONS, st.text(max_size=20), hostile_text(max_size=4))
# os.environ cannot hold a NUL, nor can a settings file line hold a line break
env_values = values.map(lambda v: v.replace("\x00", ""))


def _loaded(**environ: str) -> Settings | None:
    try:
        return load_settings("/nonexistent/env", environ)
    except ConfigError as exc:
        assert exc.message
        return None


@given(name=st.sampled_from(NAMES), value=env_values)
@example(name="VMM_LOG_LEVEL", value="bogus")  # was a ValueError traceback where logging was set up
def test_any_value_of_any_variable_is_a_setting_or_a_config_error(name: str, value: str) -> None:
    settings = _loaded(**{name: value})
    if settings is None:
        return
    for group in [settings, *(getattr(settings, f.name) for f in dataclasses.fields(settings)
                              if dataclasses.is_dataclass(getattr(settings, f.name)))]:
        for f in dataclasses.fields(group):
            read = getattr(group, f.name)
            if isinstance(read, int | float) and not isinstance(read, bool):
                assert math.isfinite(read), f.name
                assert read > 0, f.name
    assert settings.log_level.strip().upper() in LOG_LEVELS


@given(lines=st.lists(st.one_of(
    st.builds(lambda n, v: f"{n}={v}", st.sampled_from(NAMES), env_values),
    st.builds(lambda n, v: f'export {n}="{v}"', st.sampled_from(NAMES), env_values),
    st.text(max_size=20)), max_size=6))
def test_any_settings_file_is_settings_or_a_config_error(lines: list[str]) -> None:
    with tempfile.TemporaryDirectory() as folder:
        path = Path(folder) / "env"
        path.write_text("\n".join(lines), encoding="utf-8", errors="surrogateescape")
        try:
            load_settings(path, {})
        except ConfigError as exc:
            assert exc.message


@given(text=DURATIONS)
@example(text="1" + "0" * 400 + "d")  # float() of the sum overflowed: a traceback in share and audit --since
@example(text="9" * 5000 + "s")  # int() refuses more than 4,300 digits
def test_any_duration(text: str) -> None:
    try:
        total = duration(text)
    except ValueError as exc:
        assert str(exc)
    else:
        assert total == sum(int(n) * UNITS[u] for n, u in _pieces(text))
    try:
        ttl = parse_ttl(text)
    except InvalidInput as exc:
        assert repr(text) in exc.message
    else:
        assert 0 < ttl <= MAX_TTL
        assert describe_ttl(text)
    try:
        since = parse_since(text)
    except argparse.ArgumentTypeError as exc:
        assert str(exc)
    else:
        assert math.isfinite(since)


def _pieces(text: str) -> list[tuple[str, str]]:
    return re.findall(r"([0-9]+)([smhd])", text.strip().lower())


@given(text=st.one_of(values, st.dates().map(str), st.datetimes().map(str),
                      st.datetimes(timezones=st.timezones()).map(lambda d: d.isoformat())))
@example(text="9999-12-31T23:59:59-14:00")
@example(text="0001-01-01T00:00+14:00")
def test_any_since_is_a_time_or_a_usage_error(text: str) -> None:
    try:
        assert math.isfinite(parse_since(text))
    except argparse.ArgumentTypeError as exc:
        assert repr(text) in str(exc)


@given(text=values)
@example(text="9" * 5000)  # --serve: int() of 5,000 digits raised its own ValueError
def test_any_timeout_and_serve_address(text: str) -> None:
    for reader in (seconds, host_port):
        try:
            reader(text)
        except argparse.ArgumentTypeError as exc:
            assert str(exc)
    for kind in (int, float):
        try:
            assert positive_number(text, kind) > 0
        except ValueError as exc:
            assert str(exc)


urls = st.one_of(
    st.builds(lambda scheme, host, port, path: f"{scheme}://{host}{port}{path}",
              st.sampled_from(["http", "https", "HTTP", "ftp", ""]),
              st.sampled_from(["vm.example.org", "[::1]", "[::1", "::1]", "127.0.0.1", "", "a@b",
                               "ÉCOLE.fr"]),
              st.sampled_from(["", ":443", ":0", ":99999", ":abc", ":-1", ":", ":८०"]),
              st.sampled_from(["", "/", "/path", "?q", "#f"])),
    st.text(max_size=30), hostile_text(max_size=4))


@given(url=urls)
@example(url="http://x:99999")  # was urllib's ValueError: a traceback in share, serve and the TUI
@example(url="http://[::1")
def test_any_public_url_is_an_address_or_a_config_error(url: str) -> None:
    settings = Settings(web=WebSettings(public_url=url))
    try:
        base = base_url(settings)
    except ConfigError as exc:
        assert "PUBLIC_URL" in exc.message
    else:
        assert origin_of(base).startswith(("http://", "https://"))


@given(text=values)
def test_any_ports_and_proxies_setting(text: str) -> None:
    try:
        ports = parse_ports(text)
    except ConfigError as exc:
        assert "VMM_CONSOLE_PORTS" in exc.message
    else:
        assert 1024 <= ports.start < ports.stop <= 65536
    try:
        parse_proxies(text)
    except ConfigError as exc:
        assert "VMM_TRUSTED_PROXIES" in exc.message


@given(scheme=st.one_of(st.sampled_from(["{class}-{username}", "{template}.{username}", "{nope}", ""]),
                        hostile_text(max_size=4)),
       lab_class=st.sampled_from(["net101", "a.b_c"]), username=st.sampled_from(["alice", "b_o.b"]))
def test_any_vm_name_scheme_gives_a_valid_name_or_a_clear_error(scheme: str, lab_class: str,
                                                                username: str) -> None:
    try:
        vm_name(scheme, lab_class, username, "tiny")
    except InvalidInput as exc:
        assert "VM name" in exc.message
