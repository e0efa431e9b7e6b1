"""`etl`: the command line. One subcommand per stage; each lives in its own module.

The modules do the work; this file only finds them and turns their exceptions into one line on
stderr plus the documented exit code (0 ok, 1 error, 2 changes found, 3 decisions pending,
4 validation failed, 5 the anomaly guard stopped the load). `--debug` shows the traceback instead.
"""

from __future__ import annotations

import functools
import importlib
import os
import sys

import click

from etl.config import Config, load_config
from etl.errors import EXIT_ERROR, DatabaseError, EtlError

# name -> "module:attribute". Loaded on first use, so `etl --help` stays fast and one
# broken stage does not take the others down.
COMMANDS: dict[str, str] = {
    "config": "etl.cli_config:config_cmd",
    "services": "etl.cli_services:services",
    "sample": "etl.sample:sample_cmd",
    "acquire": "etl.acquire:acquire_cmd",
    "restore": "etl.restore:restore_cmd",
    "snapshot": "etl.snapshot:snapshot_cmd",
    "detect": "etl.detect:detect_cmd",
    "decide": "etl.decide:decide_cmd",
    "migrate": "etl.migrate:migrate_cmd",
    "canonical": "etl.canonical:canonical_cmd",
    "generate": "etl.generate:generate_cmd",
    "mongo-schema": "etl.mongo_schema:mongo_schema_cmd",
    "transform": "etl.transform:transform_cmd",
    "backup": "etl.backup:backup_cmd",
    "load": "etl.load:load_cmd",
    "validate": "etl.validate:validate_cmd",
    "list-versions": "etl.rollback:list_versions_cmd",
    "rollback": "etl.rollback:rollback_cmd",
    "push": "etl.push:push_cmd",
    "run": "etl.run:run_cmd",
    "status": "etl.status:status_cmd",
    "compare": "etl.compare:compare_cmd",
    "test-data": "etl.contract:test_data_cmd",
    "guard": "etl.guard:guard_cmd",
    "plan": "etl.plan_run:plan_cmd",
    "mcp": "etl.mcp_server:mcp_cmd",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx):
        return sorted(set(COMMANDS) | set(self.commands))

    def get_command(self, ctx, name):
        if name in self.commands:
            return self.commands[name]
        target = COMMANDS.get(name)
        if target is None:
            return None
        module, attr = target.split(":")
        try:
            return getattr(importlib.import_module(module), attr)
        except (ImportError, AttributeError) as exc:
            if os.environ.get("ETL_DEBUG"):
                raise
            # A stage that cannot load (a missing dependency) says so when used; the others,
            # and --help, keep working.
            reason = f"{type(exc).__name__}: {exc}"

            @click.command(name, help=f"(cannot be loaded: {reason})", context_settings={"ignore_unknown_options": True})
            @click.argument("args", nargs=-1, type=click.UNPROCESSED)
            def broken(args):
                raise click.ClickException(f"the {name} command cannot be loaded ({reason}); "
                                           "run `make` to reinstall the dependencies, or --debug")

            return broken

    def invoke(self, ctx):
        # The one place an EtlError becomes `Error: <line>` and its exit code. A MongoDB error
        # that no stage turned into one (a connection lost mid-command) is translated here.
        try:
            return super().invoke(ctx)
        except EtlError as exc:
            if os.environ.get("ETL_DEBUG"):
                raise
            raise StageExit(exc) from None
        except Exception as exc:
            if os.environ.get("ETL_DEBUG") or not type(exc).__module__.startswith("pymongo"):
                raise
            from etl.mongo import describe

            name = ctx.invoked_subcommand or "etl"
            raise StageExit(DatabaseError(f"{name}: MongoDB: {describe(exc)}")) from None


def config_options(fn):
    """Adds --debug and passes `cfg` (env > files) to the command as a keyword.

    A command with flags that override settings (e.g. --db for MONGO_DB_NAME) applies them
    with `cfg = cfg.with_overrides({"MONGO_DB_NAME": db})`, so flags win over everything.
    """

    @click.option("--debug", is_flag=True, help="Show tracebacks instead of one-line errors.")
    @functools.wraps(fn)
    def wrapper(*args, debug: bool, **kwargs):
        if debug:
            os.environ["ETL_DEBUG"] = "1"
        kwargs["cfg"] = load_config()
        from etl import runlog

        # Pipeline stages join the current run (log file, stage record); other commands don't.
        with runlog.command_stage(click.get_current_context().info_name, kwargs["cfg"]):
            return fn(*args, **kwargs)

    return wrapper


class StageExit(click.ClickException):
    def __init__(self, exc: EtlError):
        super().__init__(exc.line())
        self.exit_code = exc.exit_code


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="media-tool-etl")
def cli():
    """Keep MongoDB (bravo-1) in sync with PostgreSQL (media_tool).

    Stages, in order: acquire, restore, snapshot, detect, decide, canonical, generate,
    mongo-schema, transform, guard, backup, load, validate, push. `etl run` runs them all; the
    Makefile runs only the stale ones. Settings come from pipeline.env, pipeline.local.env,
    the environment and flags (see `etl config`).

    Exit codes: 0 ok, 1 error, 2 changes found (detect --exit-code), 3 breaking changes wait
    for a decision, 4 validation failed, 5 the anomaly guard stopped the load (a collection
    shrank beyond ETL_GUARD_MAX_SHRINK or became empty; accept with --accept-shrink).

    Example: etl plan   # what `etl run` would do now, without doing it
    """


def main(argv: list[str] | None = None) -> None:
    try:
        cli.main(args=argv, prog_name="etl", standalone_mode=True)
    except EtlError as exc:  # raised outside run_stage, e.g. while loading settings
        if os.environ.get("ETL_DEBUG"):
            raise
        click.echo(f"Error: {exc.line()}", err=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        click.echo("Interrupted; nothing was committed past the last completed step.", err=True)
        sys.exit(EXIT_ERROR)


def get_config(overrides: dict | None = None) -> Config:
    return load_config(overrides)
