"""`etl push`: the export to S3 (etl.stages.push)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.run import runlog
from etl.stages.push import push


@click.command("push")
@click.option("--db", help="Database whose export to push (default: MONGO_DB_NAME).")
@config_options
def push_cmd(cfg: Config, db: str | None):
    """Upload the transformed export (gzipped BSON, metadata, manifest) to S3.

    Objects go to s3://$S3_BUCKET/$S3_PREFIX<db>/<version>/, where the version is a content id;
    what is already there with the same checksum is skipped.

    Example: etl push --db bravo-1
    """

    cfg = cfg.with_overrides({"MONGO_DB_NAME": db})
    with runlog.stage("push", cfg) as st:
        result = push(cfg, cfg["MONGO_DB_NAME"])
        st.counts["bytes"] = result.bytes_uploaded
        st.info["push"] = {"url": result.url, "version": result.version,
                           "uploaded": len(result.uploaded), "skipped": len(result.skipped)}
    if result.uploaded:
        click.echo(f"Pushed {len(result.uploaded)} files ({result.bytes_uploaded} bytes) to {result.url}"
                   + (f"; {len(result.skipped)} already there" if result.skipped else ""))
    else:
        click.echo(f"Nothing to push: {result.url} already holds this export ({len(result.skipped)} files)")
    click.echo(f"Version: {result.version}")
