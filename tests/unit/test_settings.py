import re
from pathlib import Path

import pytest
from support.asuser import python_as
from support.cli import CHECKOUT

from core.errors import ConfigError
from core.settings import SYSTEM_ENV_FILE, env_file_path, env_names, load_settings


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("LIBVIRT_DEFAULT_URI=test:///default\nVMM_HALT_TIMEOUT=5\nVMM_DATA_DIR=/srv/x\n")
    settings = load_settings(env, environ={"VMM_HALT_TIMEOUT": "7.5"})
    assert settings.connect_uri == "test:///default"
    assert settings.actions.halt_timeout == 7.5
    assert settings.data_dir == Path("/srv/x")
    assert settings.log_path == Path("/srv/x/vm-manager.log")


def test_legacy_web_settings_still_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SECRET_KEY=s3cr3t-value\nLDAP_HOST=ldap://ldap.lab\nLDAP_BASE_DN=dc=lab\n"
                   "LDAP_BIND_USER_DN=cn=svc,dc=lab\nLDAP_BIND_USER_PASSWORD=hunter2\n")
    settings = load_settings(env, environ={})
    assert (settings.ldap.host, settings.ldap.base_dn, settings.ldap.bind_user_dn) == (
        "ldap://ldap.lab", "dc=lab", "cn=svc,dc=lab")
    assert settings.web.secret_key == "s3cr3t-value"
    assert settings.ldap.bind_user_password == "hunter2"
    # Secrets never show in a repr, which is what ends up in logs and tracebacks.
    assert "hunter2" not in repr(settings)
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(("name", "value"), [("VMM_HALT_TIMEOUT", "soon"), ("VMM_BULK_CONCURRENCY", "0"),
                                            ("VMM_HALT_TIMEOUT", "nan"), ("VMM_STATS_INTERVAL", "inf"),
                                            ("VMM_BULK_CONCURRENCY", "2.5"), ("VMM_DOMAIN_TYPE", "xen")])
def test_bad_values_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings("/nonexistent", environ={name: value})


def test_env_example_documents_every_setting() -> None:
    example = (CHECKOUT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert set(env_names()) <= documented, set(env_names()) - documented


def test_which_env_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """VMM_ENV_FILE, else ./.env, else the service's /etc/vm-manager/env (operators share its paths)."""
    monkeypatch.chdir(tmp_path)
    assert env_file_path({}) == SYSTEM_ENV_FILE == Path("/etc/vm-manager/env")
    (tmp_path / ".env").write_text("VMM_HALT_TIMEOUT=5\n")
    assert env_file_path({}) == Path(".env")
    assert load_settings(environ={}).actions.halt_timeout == 5
    assert env_file_path({"VMM_ENV_FILE": "/srv/lab.env"}) == Path("/srv/lab.env")


def test_an_unreadable_env_file_is_a_clear_error(tmp_path: Path) -> None:
    """The service's env file is 0600: another user's vm-manager says so instead of using other paths."""
    env = tmp_path / "env"
    env.write_text("SECRET_KEY=x\n")
    env.chmod(0o600)
    tmp_path.chmod(0o755)
    out = python_as("from core.settings import load_settings", "load_settings()", cwd=CHECKOUT,
                    env={"VMM_ENV_FILE": str(env), "PATH": "/usr/bin:/bin"}, timeout=30)
    assert out.returncode != 0
    assert f"ConfigError: cannot read the settings file {env}: Permission denied" in out.stderr
