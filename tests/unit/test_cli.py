"""The CLI edge: exit codes, the one error handler, masked secrets."""

from __future__ import annotations

import json

import pytest

from pipeline.cli.main import main

pytestmark = pytest.mark.unit


def test_config_show_json_masks_secrets(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SHOPLAKE_LOCALSTACK_AUTH_TOKEN", "tok-123")
    assert main(["config", "show", "--format", "json"]) == 0
    rows = {r["key"]: r for r in json.loads(capsys.readouterr().out)}
    assert rows["localstack.auth_token"]["value"] == "****"
    assert rows["localstack.auth_token"]["source"] == "env SHOPLAKE_LOCALSTACK_AUTH_TOKEN"
    assert rows["mysql.port"]["doc"]


def test_shoplake_errors_print_one_red_line_and_exit_1(capsys, monkeypatch) -> None:
    monkeypatch.setenv("SHOPLAKE_MYSQL_PORT", "not-a-port")
    assert main(["config", "show"]) == 1
    err = capsys.readouterr().err
    assert err.startswith("Error: `mysql.port` must be int")
    assert "Traceback" not in err


def test_unknown_service_in_logs_is_an_error(capsys) -> None:
    assert main(["stack", "logs", "oracle"]) == 1
    assert "unknown service `oracle`" in capsys.readouterr().err


def test_usage_errors_exit_2(capsys) -> None:
    assert main(["stack", "frobnicate"]) == 2


def test_logs_without_a_service_shows_each_log(capsys, monkeypatch, tmp_path) -> None:
    monkeypatch.setenv("SHOPLAKE_STACK_STATE_DIR", str(tmp_path))
    (tmp_path / "logs").mkdir()
    (tmp_path / "logs" / "postgres.log").write_text("first\nready to accept connections\n")
    assert main(["stack", "logs", "-n", "1"]) == 0
    out = capsys.readouterr().out
    assert "==> mariadb" in out and "(no log yet)" in out
    assert "==> postgres" in out and "ready to accept connections" in out
    assert "first" not in out


def test_an_unreachable_service_says_to_start_the_stack(capsys, monkeypatch) -> None:
    import socket

    with socket.socket() as s:  # a port where nothing listens
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    monkeypatch.setenv("SHOPLAKE_LOCALSTACK_PORT", str(port))
    assert main(["crawl"]) == 1
    err = capsys.readouterr().err
    assert err.startswith(f"Error: LocalStack (S3, Secrets Manager, Step Functions) at "
                          f"http://127.0.0.1:{port} is not reachable")
    assert len(err.splitlines()) == 2, "one error line, one hint line, however long"
    assert "shoplake stack up" in err and "unexpected" not in err


@pytest.mark.parametrize(("args", "said"), [
    (["simulate", "--rate", "inf", "--duration", "1"], "'--rate': 'inf' is not a finite number"),
    (["simulate", "--rate", "nan"], "'--rate': 'nan' is not a finite number"),
    (["seed", "--scale", "inf"], "'--scale': 'inf' is not a finite number"),
    (["seed", "--scale", "1e308", "--reset"], "'--scale': 1e+308 is not in the range 0<x<=100"),
    (["run", "--local", "--wait", "nan"], "'--wait': 'nan' is not a finite number"),
    (["runs", "--limit", "-1"], "'-n' / '--limit': -1 is not in the range 1<=x<=1000"),
])
def test_an_option_out_of_range_names_itself(capsys, args: list[str], said: str) -> None:
    assert main(args) == 2  # a usage error, refused before anything runs
    err = capsys.readouterr().err
    assert said in err and "unexpected error" not in err and "AWS" not in err


@pytest.mark.parametrize(("var", "value"), [("SHOPLAKE_CDC_BATCH_INTERVAL_S", "nan"),
                                            ("SHOPLAKE_STACK_STARTUP_TIMEOUT", "inf"),
                                            ("SHOPLAKE_CDC_BATCH_INTERVAL_S", "-inf")])
def test_a_float_setting_must_be_finite(capsys, monkeypatch, var: str, value: str) -> None:
    monkeypatch.setenv(var, value)
    assert main(["config", "show"]) == 1
    err = capsys.readouterr().err
    assert f"must be a finite number, got `{value}` (from env {var})" in err


def test_a_named_scale_not_in_the_profile_is_a_usage_error(capsys) -> None:
    assert main(["seed", "--scale", "huge"]) == 2
    err = capsys.readouterr().err
    assert "'--scale': `huge` is neither a number nor a named size" in err
    assert "demo, dev, large, tiny" in err and "unexpected error" not in err
