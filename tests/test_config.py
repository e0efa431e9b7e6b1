"""Settings: precedence, validation naming key and origin, secrets masked."""

from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.core.config import load_config, secrets_of
from etl.core.errors import ConfigError


@pytest.fixture
def root(tmp_path):
    (tmp_path / "pipeline.env").write_text("MONGO_DB_NAME=bravo-1\nETL_BATCH_SIZE=10000\nLOCAL_PG_PORT=5432\n"
                                           "S3_PREFIX=postgres-exports\n")
    return tmp_path


def test_precedence_flags_env_local_file_defaults(root):
    (root / "pipeline.local.env").write_text("ETL_BATCH_SIZE=500\nLOCAL_PG_PORT=6000\n")
    cfg = load_config({"LOCAL_PG_PORT": 7000}, root=root, environ={"ETL_BATCH_SIZE": "42", "LOCAL_PG_PORT": "6500"})
    assert cfg["LOCAL_PG_PORT"] == 7000 and cfg.origins["LOCAL_PG_PORT"] == "flag"
    assert cfg["ETL_BATCH_SIZE"] == 42 and cfg.origins["ETL_BATCH_SIZE"] == "environment"
    assert cfg["MONGO_DB_NAME"] == "bravo-1" and cfg.origins["MONGO_DB_NAME"] == "pipeline.env"
    assert cfg["ETL_SOURCE"] == "s3" and cfg.origins.get("ETL_SOURCE", "default") == "default"
    assert cfg["S3_PREFIX"] == "postgres-exports/"  # a prefix always ends with /


@pytest.mark.parametrize("key, value, words", [
    ("ETL_BATCH_SIZE", "ten", "expected a whole number"),
    ("ETL_BATCH_SIZE", "0", "at least 1"),
    ("ETL_SOURCE", "ftp", "expected one of s3, direct, file, local"),
    ("MONGO_URI", "mysql://x", "expected mongodb://"),
    ("MONGO_DB_NAME", "bravo.1", "forbids"),
    ("ETL_VALIDATE_AFTER_LOAD", "maybe", "expected true or false"),
    ("S3_ENDPOINT_URL", "localhost:9000", "expected http(s)://"),
])
def test_bad_values_name_key_and_file(root, key, value, words):
    (root / "pipeline.local.env").write_text(f"{key}={value}\n")
    with pytest.raises(ConfigError) as err:
        load_config(root=root, environ={})
    assert str(err.value).startswith(f"{key} (from pipeline.local.env):")
    assert words in str(err.value)


def test_malformed_line_names_file_and_line(root):
    (root / "pipeline.local.env").write_text("# fine\nthis is not a setting\n")
    with pytest.raises(ConfigError, match=r"pipeline.local.env:2: expected KEY=VALUE"):
        load_config(root=root, environ={})


def test_secrets_are_masked_everywhere_they_are_shown(root, monkeypatch):
    env = {"MONGO_URI": "mongodb://etl:s3cretpw@db.example:27017/?authSource=admin",
           "PROD_PG_DSN": "postgresql://reader:pgpass99@prod:5432/media_tool",
           "LOCAL_PG_PASSWORD": "localpw77"}
    cfg = load_config(root=root, environ=env)
    shown = json.dumps(cfg.describe())
    for secret in ("s3cretpw", "pgpass99", "localpw77"):
        assert secret not in shown
    assert "mongodb://etl:***@db.example:27017" in shown
    assert set(secrets_of(cfg)) == {"s3cretpw", "pgpass99", "localpw77"}


def test_config_command_shows_origins_and_masks(monkeypatch):
    monkeypatch.setenv("MONGO_URI", "mongodb://u:topsecret@h:27017")
    result = CliRunner().invoke(cli, ["config", "--json"])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["MONGO_URI"] == {"value": "mongodb://u:***@h:27017", "from": "environment"}
    assert "topsecret" not in result.output


def test_bad_setting_is_one_line_exit_1(monkeypatch):
    monkeypatch.setenv("ETL_BATCH_SIZE", "lots")
    result = CliRunner().invoke(cli, ["config"])
    assert result.exit_code == 1
    assert result.stderr.strip() == "Error: ETL_BATCH_SIZE (from environment): expected a whole number, got 'lots'"


def test_a_stage_that_cannot_load_says_so_and_the_rest_work(monkeypatch):
    from etl import cli as cli_mod

    monkeypatch.setitem(cli_mod.COMMANDS, "transform", "etl.no_such_module:transform_cmd")
    monkeypatch.delenv("ETL_DEBUG", raising=False)
    result = CliRunner().invoke(cli, ["transform", "--db", "x"])
    assert result.exit_code == 1
    assert "the transform command cannot be loaded (ModuleNotFoundError" in result.stderr
    assert CliRunner().invoke(cli, ["--help"]).exit_code == 0
    assert CliRunner().invoke(cli, ["config"]).exit_code == 0


@pytest.mark.parametrize("params", [
    {"host": "127.0.0.1", "port": "5432", "user": "postgres", "dbname": "media_tool", "connect_timeout": "10"},
    {"host": "db", "password": "p a'ss\\word=x", "dbname": "a b", "user": ""},
    {"host": "/var/run/postgresql", "password": "'", "application_name": "\\'\\"},
])
def test_connection_strings_read_and_write_as_libpq_does(params):
    from psycopg.conninfo import conninfo_to_dict
    from psycopg.conninfo import make_conninfo as psycopg_make

    from etl.core.config import conninfo_params, make_conninfo

    ours = make_conninfo(params)
    assert conninfo_to_dict(ours) == params  # psycopg (libpq) reads what we write
    assert conninfo_params(psycopg_make(**params)) == params  # we read what psycopg writes
    assert conninfo_params(ours) == params
    assert conninfo_params("postgresql://u:secret@h:5/d") == {"user": "u", "password": "secret", "host": "h",
                                                              "port": "5", "dbname": "d"}
    with pytest.raises(ConfigError, match="unterminated quote in password"):
        conninfo_params("host=h password='abc")
