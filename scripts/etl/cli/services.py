"""`etl services up|down|status`: the local PostgreSQL cluster, S3 server and MongoDB server."""

from __future__ import annotations

from urllib.parse import urlsplit

import click

from etl.adapters.mongodb import is_local
from etl.adapters.services import MongoServer, MotoServer, PgCluster, port_open
from etl.cli import config_options
from etl.core.config import mask_uri
from etl.core.errors import ServiceError
from etl.core.paths import paths


def cluster_for(cfg) -> PgCluster | None:
    if not cfg["LOCAL_PG_MANAGED"]:
        return None
    return PgCluster(paths.run / "pg", cfg["LOCAL_PG_PORT"], user=cfg["LOCAL_PG_USER"])


def moto_for(cfg) -> MotoServer | None:
    """The S3 endpoint is ours to run only when it points at this machine."""
    url = cfg["S3_ENDPOINT_URL"]
    if not url:
        return None
    parts = urlsplit(url)
    if parts.hostname not in ("127.0.0.1", "localhost") or not parts.port:
        return None
    return MotoServer(paths.run / "s3", parts.port)


MONGO_SERVER_BIN = ".venv-mongo/bin/secantusd-py"


def mongo_for(cfg) -> MongoServer | None:
    """The managed MongoDB server (MONGO_MANAGED=true), on the port MONGO_URI names."""
    if not cfg["MONGO_MANAGED"]:
        return None
    uri = cfg["MONGO_URI"]
    if not is_local(uri):
        raise ServiceError(f"MONGO_MANAGED=true, but MONGO_URI ({mask_uri(uri)}) is not one host on this "
                           "machine with a port", hint="set MONGO_MANAGED=false to use that server as it is")
    return MongoServer(paths.run / "mongo", urlsplit(uri).port, paths.root / MONGO_SERVER_BIN)


def start_services(cfg, echo=click.echo) -> None:
    cluster = cluster_for(cfg)
    if cluster:
        was = cluster.running()
        cluster.start()
        echo(f"postgresql  {'already running' if was else 'started'} on 127.0.0.1:{cluster.port} ({cluster.data})")
    moto = moto_for(cfg)
    if moto:
        was = moto.running()
        moto.start()
        echo(f"s3 (moto)   {'already running' if was else 'started'} on {moto.url}")
    mongo = mongo_for(cfg)
    if mongo:
        was = mongo.running()
        mongo.start()
        echo(f"mongodb     {'already running' if was else 'started'} on {mongo.uri} ({mongo.data})")
    else:
        echo(f"mongodb     {mask_uri(cfg['MONGO_URI'])} (yours to run: MONGO_MANAGED=false)")


@click.group("services")
def services():
    """Start, stop and inspect the local services for the demo.

    A private PostgreSQL cluster in .run/pg (when LOCAL_PG_MANAGED=true), a moto S3 server
    (when S3_ENDPOINT_URL points at this machine) and a MongoDB server, SecantusDB, with its
    data in .run/mongo on the port of MONGO_URI (when MONGO_MANAGED=true). Starting twice is
    harmless.

    Example: etl services up && etl services status
    """


@services.command("up")
@config_options
def up(cfg):
    """Start what is not running yet."""
    start_services(cfg)


@services.command("down")
@config_options
def down(cfg):
    """Stop the local PostgreSQL cluster, S3 server and MongoDB server (data folders stay)."""
    cluster, moto, mongo = cluster_for(cfg), moto_for(cfg), mongo_for(cfg)
    if cluster:
        cluster.stop()
        click.echo(f"postgresql  stopped ({cluster.data} kept)")
    if moto:
        moto.stop()
        click.echo("s3 (moto)   stopped (its buckets lived in memory and are gone)")
    if mongo:
        mongo.stop()
        click.echo(f"mongodb     stopped ({mongo.data} kept)")


@services.command("status")
@config_options
def status(cfg):
    """Say what runs where. Exit 1 when a managed service is down."""
    down_count = 0
    cluster = cluster_for(cfg)
    if cluster:
        ok = cluster.running()
        down_count += not ok
        click.echo(f"postgresql  {'running' if ok else 'stopped'}  127.0.0.1:{cluster.port}  {cluster.data}")
    else:
        host, port = cfg["LOCAL_PG_HOST"], cfg["LOCAL_PG_PORT"]
        click.echo(f"postgresql  external  {host}:{port}  {'answers' if port_open(host, port) else 'not answering'}")
    moto = moto_for(cfg)
    if moto:
        ok = moto.running()
        down_count += not ok
        click.echo(f"s3 (moto)   {'running' if ok else 'stopped'}  {moto.url}")
    else:
        click.echo(f"s3          external  {cfg['S3_ENDPOINT_URL'] or 'AWS'}")
    mongo = mongo_for(cfg)
    if mongo:
        ok = mongo.running()
        down_count += not ok
        click.echo(f"mongodb     {'running' if ok else 'stopped'}  {mongo.uri}  {mongo.data}")
    else:
        click.echo(f"mongodb     external  {mask_uri(cfg['MONGO_URI'])}")
    if down_count:
        raise click.exceptions.Exit(1)
