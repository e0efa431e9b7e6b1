"""`etl generate`: JSON Schema, OpenAPI, TypeScript, Zod and Pydantic artifacts (etl.stages.generate)."""

from __future__ import annotations

from pathlib import Path

import click

from etl.cli import config_options
from etl.core.config import Config
from etl.stages.generate import generate


@click.command("generate")
@click.option("--schemas", "schema_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Canonical schemas folder (default: schemas/collections).")
@click.option("--out", "out_dir", type=click.Path(file_okay=False, path_type=Path),
              help="Output folder (default: generated).")
@click.option("--force", is_flag=True, help="Regenerate even if the canonical hash is unchanged.")
@config_options
def generate_cmd(schema_dir: Path | None, out_dir: Path | None, force: bool, cfg: Config) -> None:
    """Generate JSON Schema, OpenAPI, TypeScript, Zod, Pydantic and contract tests.

    Runs only when the canonical schemas changed; writes only files whose content changed.
    Needs Node with the packages from package-lock.json (`npm ci`).

    Example: etl generate --force
    """
    result = generate(schema_dir, out_dir, force=force, node=cfg["ETL_NODE"])
    if not result.regenerated:
        click.echo(f"Generated artifacts are current (canonical hash {result.canonical_hash[:12]}).")
        return
    click.echo(f"Generated from canonical hash {result.canonical_hash[:12]}: "
               f"{len(result.written)} written, {len(result.removed)} removed, "
               f"{result.unchanged} unchanged.")
    for rel in result.written:
        click.echo(f"  wrote   {rel}")
    for rel in result.removed:
        click.echo(f"  removed {rel}")
