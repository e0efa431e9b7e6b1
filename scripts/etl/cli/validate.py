"""`etl validate`: does MongoDB hold what the transform produced (etl.stages.validate)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.run import runlog
from etl.stages.rollback import rollback
from etl.stages.validate import validate_and_report


@click.command("validate")
@click.option("--db", help="Database to validate (default: MONGO_DB_NAME).")
@click.option("--sample", type=click.IntRange(min=0), default=None,
              help="Documents schema-checked per collection; 0 = all (default: ETL_VALIDATE_SAMPLE).")
@click.option("--rollback-on-invalid/--no-rollback-on-invalid", default=None,
              help="Restore the pre-load backup when validation fails (default: ETL_ROLLBACK_ON_INVALID).")
@click.option("--after-load", is_flag=True,
              help="Run as the step after a load: does nothing when ETL_VALIDATE_AFTER_LOAD=false.")
@config_options
def validate_cmd(cfg: Config, db: str | None, sample: int | None, rollback_on_invalid: bool | None,
                 after_load: bool):
    """Check MongoDB against the transformed files: counts, checksums, schemas, references.

    Writes reports/validation-<db>-<ts>.json and .md. Exit 4 when a check fails.

    Example: etl validate --db bravo-1 --sample 1000
    """
    cfg = cfg.with_overrides({"MONGO_DB_NAME": db})
    if after_load and not cfg["ETL_VALIDATE_AFTER_LOAD"]:
        click.echo("Validation after load is off (ETL_VALIDATE_AFTER_LOAD=false); skipped.")
        return
    with runlog.stage("validate", cfg) as st:
        target = cfg["MONGO_DB_NAME"]
        report, path = validate_and_report(cfg, target, sample=sample, rollback_on_invalid=rollback_on_invalid,
                                           restore=lambda version: rollback(cfg, target, version))
        st.counts["documents"] = sum(r["count"]["actual"] for r in report["collections"].values())
        st.info["validation"] = {"report": str(path), "ok": True}
    total = sum(r["count"]["actual"] for r in report["collections"].values())
    click.echo(f"{report['database']}: {len(report['collections'])} collections, {total} documents valid")
    for note in report["notes"]:
        click.echo(f"  {note}")
    checked = sum(1 for r in report["collections"].values() if r["validator"]["status"] == "ok")
    click.echo(f"  validators checked on {checked} of {len(report['collections'])} collections")
    click.echo(f"Report: {path}")
