"""MongoDB is reached only through a mongodb:// URI: name rules, unreachable servers, bad URIs."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.core.errors import ConfigError
from etl.adapters.mongodb import connect
from etl.core.names import check_db_name
from etl.adapters.services import free_port


def test_unreachable_server_is_one_line_naming_the_masked_uri(project, monkeypatch):
    uri = f"mongodb://etl:n0tshown@127.0.0.1:{free_port()}/?serverSelectionTimeoutMS=500"
    monkeypatch.setenv("MONGO_URI", uri)
    result = CliRunner().invoke(cli, ["mongo-schema"])
    assert result.exit_code == 1
    errors = [line for line in result.stderr.splitlines() if line.startswith("Error:")]
    assert len(errors) == 1 and "is not reachable" in errors[0]
    assert "mongodb://etl:***@127.0.0.1" in errors[0]
    assert "n0tshown" not in result.output


@pytest.mark.parametrize("name", ["bravo.1", "bravo 1", "a/b", "x" * 64, ""])
def test_database_names_follow_mongodb_rules(name):
    with pytest.raises(ConfigError):
        check_db_name(name)


def test_parallel_names_are_accepted():
    assert check_db_name("bravo-1-20261126") == "bravo-1-20261126"


@pytest.mark.parametrize("uri", ["file:.run/mongo/store", "memory://x", "http://127.0.0.1:27017",
                                 "mongodb://", "mongodb://127.0.0.1:port/"])
def test_only_mongodb_uris_are_settings(uri):
    from etl.core.config import load_config

    with pytest.raises(ConfigError, match="MONGO_URI"):
        load_config({"MONGO_URI": uri}, environ={})


def test_a_wrong_password_is_one_line_not_a_timeout(mongo_base_uri):
    from urllib.parse import urlsplit

    from etl.core.errors import DatabaseError

    parts = urlsplit(mongo_base_uri)
    uri = parts._replace(netloc=f"nobody:wr0ng-pw@{parts.hostname}:{parts.port}", query="authSource=admin").geturl()
    with pytest.raises(DatabaseError) as refused:
        connect(uri, timeout_ms=3000)
    line = refused.value.line()
    assert "refused the connection" in line and "AuthenticationFailed" in line
    assert "wr0ng-pw" not in line and "nobody:***@" in line
