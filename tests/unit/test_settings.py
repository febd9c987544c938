import re
from pathlib import Path

import pytest

from core.errors import ConfigError
from core.settings import env_names, load_settings

ROOT = Path(__file__).resolve().parents[2]


def test_environment_wins_over_dotenv(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("LIBVIRT_DEFAULT_URI=test:///default\nVMM_HALT_TIMEOUT=5\nVMM_DATA_DIR=/srv/x\n")
    settings = load_settings(env, environ={"VMM_HALT_TIMEOUT": "7.5"})
    assert settings.connect_uri == "test:///default"
    assert settings.halt_timeout == 7.5
    assert settings.data_dir == Path("/srv/x")
    assert settings.log_path == Path("/srv/x/vm-manager.log")


def test_legacy_web_settings_still_read(tmp_path: Path) -> None:
    env = tmp_path / ".env"
    env.write_text("SECRET_KEY=s3cr3t-value\nLDAP_HOST=ldap://ldap.lab\nLDAP_BASE_DN=dc=lab\n"
                   "LDAP_BIND_USER_DN=cn=svc,dc=lab\nLDAP_BIND_USER_PASSWORD=hunter2\n")
    settings = load_settings(env, environ={})
    assert (settings.ldap_host, settings.ldap_base_dn, settings.ldap_bind_user_dn) == (
        "ldap://ldap.lab", "dc=lab", "cn=svc,dc=lab")
    assert settings.secret_key == "s3cr3t-value"
    assert settings.ldap_bind_user_password == "hunter2"
    # Secrets never show in a repr, which is what ends up in logs and tracebacks.
    assert "hunter2" not in repr(settings)
    assert "s3cr3t" not in repr(settings)


@pytest.mark.parametrize(("name", "value"), [("VMM_HALT_TIMEOUT", "soon"), ("VMM_BULK_CONCURRENCY", "0"),
                                            ("VMM_DOMAIN_TYPE", "xen")])
def test_bad_values_are_refused_with_the_variable_named(name: str, value: str) -> None:
    with pytest.raises(ConfigError, match=name):
        load_settings("/nonexistent", environ={name: value})


def test_env_example_documents_every_setting() -> None:
    example = (ROOT / ".env.example").read_text()
    documented = set(re.findall(r"^#?\s*([A-Z][A-Z0-9_]+)=", example, re.MULTILINE))
    assert set(env_names()) <= documented, set(env_names()) - documented
