"""Endpoint details that need no VM: port ranges, VNC targets, the transport choice, the auth plugin."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest
from websockify.auth_plugins import AuthenticationError

from core.domainxml import DomainInfo, Graphics
from core.errors import ConfigError
from core.lab import Lab
from core.metadata import LabMeta
from core.settings import Settings
from core.web import ENDPOINT_SECRET_ENV, ENDPOINT_SECRET_HEADER, EndpointSecret, base_url, origin_of
from core.web.endpoints import EndpointError, Endpoints, parse_ports, vnc_target


def info(*graphics: Graphics) -> DomainInfo:
    return DomainInfo("vm", "u", "kvm", 1, 64, LabMeta(), (), (), graphics)


def test_parse_ports() -> None:
    assert parse_ports("6900-6999") == range(6900, 7000)
    assert parse_ports(" 7000 ") == range(7000, 7001)
    for bad in ("", "a-b", "6999-6900", "80-90", "6900-70000"):
        with pytest.raises(ConfigError, match="VMM_CONSOLE_PORTS"):
            parse_ports(bad)


def test_vnc_targets() -> None:
    assert vnc_target(info(Graphics("vnc", "/s/u.vnc", None, "/s/u.vnc"))) == ["--unix-target", "/s/u.vnc"]
    assert vnc_target(info(Graphics("vnc", "127.0.0.1", 5901, ""))) == ["127.0.0.1:5901"]
    assert vnc_target(info(Graphics("vnc", "0.0.0.0", 5902, ""))) == ["127.0.0.1:5902"]
    assert vnc_target(info(Graphics("vnc", "::", 5903, ""))) == ["[::1]:5903"]
    assert vnc_target(info(Graphics("spice", "127.0.0.1", 5930, ""),
                           Graphics("vnc", "127.0.0.1", 5904, ""))) == ["127.0.0.1:5904"]
    for graphics, problem in ((Graphics("vnc", "127.0.0.1", None, ""), "no VNC port"),
                              (Graphics("spice", "127.0.0.1", 5930, ""), "no VNC display"),
                              (Graphics("vnc", "host.example", 5900, ""), "not an address")):
        with pytest.raises(EndpointError, match=problem):
            vnc_target(info(graphics))


def test_long_run_dirs_fall_back_to_loopback_ports(test_lab: Lab, web_settings: Settings) -> None:
    assert Endpoints(web_settings, test_lab)._use_unix(web_settings.run_path / "consoles" / "x.sock")
    deep = Path("/tmp/" + "d" * 80)
    long = dataclasses.replace(web_settings, runtime_dir=deep)
    assert not Endpoints(long, test_lab)._use_unix(deep / "consoles" / f"{'u' * 36}.sock")
    assert not Endpoints(web_settings, test_lab, transport="tcp")._use_unix(Path("/tmp/x.sock"))
    with pytest.raises(ValueError, match="transport"):
        Endpoints(web_settings, test_lab, transport="udp")


def test_endpoint_auth_plugin(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv(ENDPOINT_SECRET_ENV, "s3cret")
    plugin = EndpointSecret("ignored")
    plugin.authenticate({ENDPOINT_SECRET_HEADER: "s3cret"}, None, None)
    for headers in ({}, {ENDPOINT_SECRET_HEADER: "s3cre"}, {ENDPOINT_SECRET_HEADER: "s3cret "}):
        with pytest.raises(AuthenticationError):
            plugin.authenticate(headers, None, None)
    monkeypatch.delenv(ENDPOINT_SECRET_ENV)
    with pytest.raises(AuthenticationError):  # no secret at all: nobody gets in
        EndpointSecret().authenticate({ENDPOINT_SECRET_HEADER: ""}, None, None)


def test_public_url_and_origin(web_settings: Settings) -> None:
    assert origin_of("https://VM.example.org:443/") == "https://vm.example.org"
    assert origin_of("http://10.0.0.5:5000") == "http://10.0.0.5:5000"
    assert origin_of("http://[::1]:8080/") == "http://[::1]:8080"
    assert base_url(web_settings, "0.0.0.0", 8000) == "http://0.0.0.0:8000"
    assert base_url(dataclasses.replace(web_settings, public_url="https://vm.example.org/")) == \
        "https://vm.example.org"
    for bad in ("vm.example.org", "ftp://vm.example.org", "https://vm.example.org/consoles"):
        with pytest.raises(ConfigError, match="PUBLIC_URL"):
            base_url(dataclasses.replace(web_settings, public_url=bad))
