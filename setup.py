"""The one compiled part: the transform's fast path (scripts/etl/_pgbson.c). Everything else
is declared in pyproject.toml.

`optional`: without a C compiler the install still succeeds and every collection takes the
transform's general path (slower; the manifest's `reader_note` says why)."""

from setuptools import Extension, setup

setup(ext_modules=[Extension("etl._pgbson", ["scripts/etl/_pgbson.c"], optional=True,
                             extra_compile_args=["-O2", "-std=c11", "-Wall", "-Wextra", "-Wno-missing-field-initializers"])])
