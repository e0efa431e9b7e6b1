"""The compiled parts: the transform's fast path (scripts/etl/stages/transform/_pgbson.c) and the canonical
BSON of the content checksums (scripts/etl/model/_bsoncanon.c). Everything else is declared in
pyproject.toml.

`optional`: without a C compiler the install still succeeds; every collection then takes the
transform's general path (slower; the manifest's `reader_note` says why) and checksums use
the pure-Python walk of etl.checksums (slower, same bytes)."""

from setuptools import Extension, setup

FLAGS = ["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"]

setup(ext_modules=[Extension("etl.stages.transform._pgbson", ["scripts/etl/stages/transform/_pgbson.c"], optional=True, extra_compile_args=FLAGS),
                   Extension("etl.model._bsoncanon", ["scripts/etl/model/_bsoncanon.c"], optional=True,
                             extra_compile_args=FLAGS)])
