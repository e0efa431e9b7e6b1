"""`etl guard`: stop the load when a collection of the new dump collapsed (exit 5)."""

from __future__ import annotations

import logging
import socket

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.core.errors import GuardStop
from etl.model.guard import parse_accept
from etl.run.runlog import current_stage
from etl.stages.guard import check, report_lines

log = logging.getLogger("etl.guard")


@click.command("guard")
@click.option("--db", help="Target database (default MONGO_DB_NAME).")
@click.option("--accept-shrink", "accept", multiple=True, metavar="COLLECTION[,…]",
              help="Load these collections even though they shrank, emptied or went back (recorded in the audit).")
@click.option("--by", "accepted_by", help="Who accepts (default: the login name).")
@config_options
def guard_cmd(cfg: Config, db: str | None, accept: tuple[str, ...], accepted_by: str | None):
    """Stop the load when a collection of the new dump collapsed; MongoDB is only read.

    Compares each collection's document count in data/transformed/<db>/ with MongoDB's:
    a drop beyond ETL_GUARD_MAX_SHRINK (default 50%; ETL_GUARD_MAX_SHRINK_COLLECTIONS per
    collection), a collection that would become empty, or a newest updated_at-like value older
    than the one loaded exits 5. `make all ACCEPT_SHRINK=name` accepts it.

    Example: etl guard --accept-shrink daily_metrics --by alice
    """
    target = cfg["MONGO_DB_NAME"] if db is None else db
    report = check(cfg, target, parse_accept(accept), accepted_by)
    if (stage := current_stage()) is not None:  # the run's audit record
        stage.info["guard"] = report.as_dict()
        stage.counts["collections"] = len(report.checks)
    for line in report_lines(report):
        click.echo(line)
    for c in report.accepted:
        log.warning("guard: %s accepted by %s on %s: %s", c.collection, report.accepted_by,
                    socket.gethostname(), "; ".join(c.problems))
    if report.stopped:
        names = ",".join(c.collection for c in report.stopped)
        raise GuardStop(report.stop_message(),
                        hint=f"if the dump is right: make all ACCEPT_SHRINK={names} (or etl run --accept-shrink {names})")
