"""`etl canonical`: the canonical per-collection schemas and the mapping (etl.stages.canonical)."""

from __future__ import annotations

import click

from etl.cli import config_options
from etl.stages.canonical import log, run_canonical


@click.command("canonical")
@config_options
def canonical_cmd(cfg):
    """Write the canonical per-collection schemas and the mapping.

    Reads schemas/accepted.json, schemas/rules.yaml and schemas/decisions.yaml; writes
    schemas/collections/<collection>.schema.json, schemas/collections/index.json (with the
    canonical hash) and schemas/mapping.json, each only when its content changed.

    Example: etl canonical
    """
    summary = run_canonical()
    log.info("canonical hash %s: %d collections, %d written, %d removed", summary["hash"][:12],
             summary["collections"], len(summary["written"]), len(summary["removed"]))
    if not (summary["written"] or summary["removed"] or summary["index_written"] or summary["mapping_written"]):
        click.echo(f"Canonical schemas unchanged ({summary['collections']} collections, "
                   f"hash {summary['hash'][:12]}).")
        return
    click.echo(f"Canonical schemas: {summary['collections']} collections, hash {summary['hash'][:12]}; "
               f"rewrote {len(summary['written'])}"
               + (f" ({', '.join(summary['written'])})" if summary["written"] else "")
               + (f", removed {', '.join(summary['removed'])}" if summary["removed"] else "") + ".")
