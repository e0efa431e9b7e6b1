"""Exceptions the stages raise, and the exit codes cron reads.

Each stage raises a narrow exception; the CLI edge (etl.cli) turns it into one line on stderr
and the exit code below. Nothing else in the code calls sys.exit.
"""

EXIT_OK = 0
EXIT_ERROR = 1
EXIT_CHANGES = 2  # detect --exit-code found changes
EXIT_PENDING = 3  # breaking changes wait for a decision; MongoDB untouched
EXIT_INVALID = 4  # validation failed; previous data still there or restored
EXIT_GUARD = 5  # the anomaly guard stopped the load (a collection shrank); MongoDB untouched


class EtlError(Exception):
    """An expected failure: one clear line for the user, exit code `exit_code`."""

    exit_code = EXIT_ERROR

    def __init__(self, message: str, *, hint: str | None = None):
        super().__init__(message)
        self.hint = hint

    def line(self) -> str:
        msg = str(self)
        return f"{msg} ({self.hint})" if self.hint else msg


class ConfigError(EtlError):
    """A setting is missing or malformed; the message names the key and where it came from."""


class ServiceError(EtlError):
    """A local service (PostgreSQL cluster, S3 server, MongoDB server) could not be managed."""


class SourceError(EtlError):
    """Acquisition failed: S3 unreachable, bucket/key missing, pg_dump failed, dump corrupt."""


class SampleError(EtlError):
    """The synthetic sample database could not be generated or dumped."""


class RestoreError(EtlError):
    """pg_restore failed; the previous database is kept."""


class DatabaseError(EtlError):
    """PostgreSQL or MongoDB could not be reached or refused an operation."""


class SnapshotError(EtlError):
    """A schema snapshot could not be taken or read (corrupt, future format)."""


class DecisionError(EtlError):
    """The decisions file or an answer is malformed or stale."""


class PendingDecisions(EtlError):
    """Review changes have no recorded decision; nothing in MongoDB was touched."""

    exit_code = EXIT_PENDING


class RulesError(EtlError):
    """The business rules file is malformed or names a column that does not exist."""


class GenerateError(EtlError):
    """An artifact generator failed or is missing; previous artifacts are kept."""


class TransformError(EtlError):
    """A row could not be turned into a document under the configured policies."""


class LoadError(EtlError):
    """Loading into MongoDB failed; the previous collections are untouched."""


class ValidationFailed(EtlError):
    """The loaded data does not match its source or its schema."""

    exit_code = EXIT_INVALID


class GuardStop(EtlError):
    """A collection of the new dump shrank beyond ETL_GUARD_MAX_SHRINK, became empty, or its
    newest timestamp went back; the load did not start and MongoDB was not touched."""

    exit_code = EXIT_GUARD


class BackupError(EtlError):
    """A backup version is unknown, malformed or does not verify."""


class LockHeld(EtlError):
    """Another run holds the pipeline lock."""


class RunError(EtlError):
    """The master run cannot start: no make, no Makefile, a bad run id or flag."""


class MigrationError(EtlError):
    """A migration script is malformed, or the server refused one of its statements."""


class PushError(EtlError):
    """Uploading the export to S3 failed: endpoint unreachable, bucket missing, no credentials."""


class ValidationError(EtlError):
    """Validation could not run: no transformed export, or an unreadable manifest or schema.
    (Data that fails its checks is ValidationFailed, exit 4.)"""
