"""MongoDB is reached only through a URI: stand-in schemes, name rules, unreachable servers."""

from __future__ import annotations

import pytest
from click.testing import CliRunner

from etl.cli import cli
from etl.errors import ConfigError
from etl.mongo import check_db_name, connect
from etl.services import free_port


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


def test_file_backed_standin_keeps_data_across_clients(tmp_path):
    uri = f"litemongo:{tmp_path}/store"
    first = connect(uri)
    first["bravo-1"].campaigns.insert_one({"_id": 1, "name": "kept"})
    first.close()
    second = connect(uri)
    assert second["bravo-1"].campaigns.find_one({"_id": 1}) == {"_id": 1, "name": "kept"}
    second.close()
