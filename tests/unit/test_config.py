from __future__ import annotations

from pathlib import Path

import pytest

from pipeline.config import Secret, env_name, load_settings
from pipeline.errors import ConfigError

pytestmark = pytest.mark.unit


def test_native_defaults_are_loopback_on_non_standard_ports() -> None:
    s = load_settings(environ={})
    assert s.mode == "native"
    assert (s.mysql.host, s.mysql.port) == ("127.0.0.1", 13306)
    assert (s.postgres.host, s.postgres.port) == ("127.0.0.1", 15432)
    assert s.localstack.endpoint_url == "http://127.0.0.1:14566"
    assert s.state_dir == Path.cwd() / ".shoplake"
    assert s.sources["mysql.port"] == "default (native)"


def test_compose_mode_switches_hosts_and_ports_only_in_config() -> None:
    s = load_settings(environ={"SHOPLAKE_STACK_MODE": "compose"})
    assert (s.mysql.host, s.mysql.port) == ("mysql", 3306)
    assert (s.postgres.host, s.postgres.port) == ("postgres", 5432)
    assert s.localstack.endpoint_url == "http://localstack:4566"
    assert s.state_dir == Path("/var/lib/shoplake")
    # names do not depend on the mode
    assert s.lake == load_settings(environ={}).lake
    assert s.mysql.database == "shop"


def test_environment_beats_default_and_override_beats_environment() -> None:
    env = {"SHOPLAKE_MYSQL_PORT": "3307", "SHOPLAKE_LAKE_BRONZE_BUCKET": "raw"}
    s = load_settings(environ=env)
    assert s.mysql.port == 3307 and isinstance(s.mysql.port, int)
    assert s.lake.bronze_bucket == "raw"
    assert s.sources["mysql.port"] == "env SHOPLAKE_MYSQL_PORT"
    s2 = load_settings(environ=env, mysql__port=4000)
    assert s2.mysql.port == 4000
    assert s2.sources["mysql.port"] == "override"


def test_bad_values_raise_config_errors_naming_the_key() -> None:
    with pytest.raises(ConfigError, match="mysql.port"):
        load_settings(environ={"SHOPLAKE_MYSQL_PORT": "thirteen"})
    with pytest.raises(ConfigError, match="SHOPLAKE_STACK_MODE"):
        load_settings(environ={"SHOPLAKE_STACK_MODE": "kubernetes"})


@pytest.mark.parametrize(("env", "said"), [
    ({"SHOPLAKE_ORCHESTRATION_HEARTBEAT_S": "5000"},
     "`orchestration.heartbeat_s` (5000) must be below `orchestration.task_timeout_s` (1800)"),
    ({"SHOPLAKE_ORCHESTRATION_TASK_TIMEOUT_S": "20"}, "(from env "
                                                       "SHOPLAKE_ORCHESTRATION_TASK_TIMEOUT_S)"),
    ({"SHOPLAKE_CDC_SERVER_ID": "-5"}, "`cdc.server_id` must be from 1 to 4294967295"),
    ({"SHOPLAKE_MYSQL_SERVER_ID": "99999999999"}, "`mysql.server_id` must be from 1 to"),
    ({"SHOPLAKE_SPARK_DRIVER_MEMORY": "lots"}, "a JVM size such as `2g`"),
    ({"SHOPLAKE_SPARK_DRIVER_MEMORY": "2 g"}, "a JVM size"),
])
def test_values_the_services_would_refuse_are_refused_here(env: dict[str, str],
                                                             said: str) -> None:
    with pytest.raises(ConfigError) as exc:
        load_settings(environ=env)
    assert said in exc.value.message


def test_a_jvm_size_is_accepted() -> None:
    assert load_settings(environ={"SHOPLAKE_SPARK_DRIVER_MEMORY": "512m"}).spark.driver_memory \
        == "512m"


def test_secrets_never_print() -> None:
    s = load_settings(environ={"SHOPLAKE_LOCALSTACK_AUTH_TOKEN": "ls-very-secret"})
    assert s.localstack.auth_token.reveal() == "ls-very-secret"
    assert "ls-very-secret" not in repr(s)
    assert "ls-very-secret" not in str(s.describe())
    assert str(Secret("x")) == "****"


def test_every_field_is_documented_and_has_an_env_name() -> None:
    rows = load_settings(environ={}).describe()
    assert len(rows) > 20
    for key, _value, _source, doc in rows:
        assert doc, key
        section, name = key.split(".")
        assert env_name(section, name) == f"SHOPLAKE_{section}_{name}".upper()


def test_relative_state_dir_is_made_absolute(tmp_path: Path, monkeypatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = load_settings(environ={"SHOPLAKE_STACK_STATE_DIR": "state"})
    assert s.state_dir == tmp_path / "state"


def test_redact_hides_password_fields_and_known_secrets() -> None:
    from pipeline.config import Secret, redact

    body = ('b\'{"SecretString": "{\\\\"engine\\\\": \\\\"mysql\\\\", \\\\"password\\\\": '
            '\\\\"Hunter2Hunter2\\\\"}"}\'')
    assert "Hunter2Hunter2" not in redact(body) and "engine" in redact(body)
    assert redact('{"password": "x1", "user": "u"}') == '{"password": "****", "user": "u"}'
    assert redact("{'salt': 'pepper'}") == "{'salt': '****'}"
    Secret("Kn0wnSecretValue")
    assert redact("login with Kn0wnSecretValue failed") == "login with **** failed"
    Secret("test")  # too short to hide without hiding every other word
    assert redact("shoplake-test-abc") == "shoplake-test-abc"
