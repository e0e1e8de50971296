"""Backups (#16): one file per backup, taken while the hub serves, and brought back into an empty
database.

A backup is a tar file ``channelhub-<UTC time>.chbk`` (gzip-compressed for SQLite; a PostgreSQL
dump is compressed already) holding, in this order:

- ``manifest.json``: the format and its version, the hub's version, the schema's alembic revision,
  the database kind, when it was made, the SHA-256 and size of every other member, and the
  fingerprint of the secret key the channel credentials are encrypted with;
- ``database.sqlite3`` (SQLite's online backup API, one step on a connection of its own: a
  consistent snapshot while the hub keeps writing, WAL readers never block writers) or
  ``database.pgdump`` (``pg_dump --format=custom``, in a snapshot exported by our own
  repeatable-read transaction, in which the alembic revision is read too);
- ``secret.key``: the key file (``CHANNELHUB_SECRET_KEY_FILE``) when the key comes from it. A
  key given in ``CHANNELHUB_SECRET_KEY`` is not in the backup: only its fingerprint is.

Attachments are rows of the database (``attachments.data``), so the dump holds them; nothing else
the hub keeps lives in files. The file is written under a hidden temporary name and linked to its
final name only when complete, so a file with our name is always whole.

``restore`` refuses unless the target database is empty, the manifest and every hash check out,
the database kind matches and the key the hub runs with is the backup's (or none is there yet, and
the backup's key file is put in place). An older backup's schema is brought up by ``channelhub
migrate`` afterwards.

Scheduling (``scheduled``): every ``serve`` process asks now and then; the one that takes the
``periodic_jobs`` row's lease, while a backup is due, makes it. The dump runs in a thread (SQLite)
or a child process (PostgreSQL), never on the event loop.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import io
import json
import logging
import os
import re
import shutil
import sqlite3
import tarfile
import tempfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import IO, Any

from sqlalchemy import or_, text, update
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import create_async_engine
from sqlalchemy.pool import NullPool

from core import secrets
from core.config import Settings
from core.db import Database, alembic_config
from core.errors import DomainError
from core.leases import RowLease
from core.models import PeriodicJob, table_of

logger = logging.getLogger(__name__)

FORMAT = "channelhub-backup"
FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SQLITE_MEMBER = "database.sqlite3"
PG_MEMBER = "database.pgdump"
KEY_MEMBER = "secret.key"
NAME = re.compile(r"^channelhub-(?P<at>\d{8}T\d{6}Z)(?:-(?P<n>\d+))?\.chbk$")
_TIME = "%Y%m%dT%H%M%SZ"
_CHUNK = 1 << 20
# The scheduled backup's lease: renewed every third of it while the backup runs, so a process
# that dies mid-backup holds the job up this long at most.
LEASE_SECONDS = 300.0
# After a failed scheduled backup, nobody tries again for this long (the log says why once, not
# every minute).
RETRY_SECONDS = 600.0
# libpq's variables that say where to connect: ours replace the environment's, so a stray
# PGDATABASE never sends a dump or a restore elsewhere.
_PG_WHERE = ("PGHOST", "PGHOSTADDR", "PGPORT", "PGUSER", "PGPASSWORD", "PGDATABASE", "PGSERVICE", "PGSSLMODE")


class BackupError(DomainError):
    """A backup could not be made, or a file cannot be restored here (the CLI exits 2)."""

    code = "backup_failed"


@dataclass
class Restored:
    """What ``restore`` did, for the operator to read."""

    manifest: dict[str, Any]
    key_written: Path | None = None
    warnings: list[str] = field(default_factory=list)


def kind(settings: Settings) -> str:
    return "sqlite" if settings.is_sqlite else "postgresql"


def file_name(at: datetime, n: int = 0) -> str:
    return f"channelhub-{at.astimezone(UTC).strftime(_TIME)}{f'-{n}' if n else ''}.chbk"


def taken_at(path: Path) -> datetime | None:
    """When the backup of that name was taken (its name says), or None for files not ours."""
    m = NAME.match(path.name)
    return datetime.strptime(m["at"], _TIME).replace(tzinfo=UTC) if m else None


def _sqlite_path(url: str) -> Path:
    database = make_url(url).database
    if not database or database == ":memory:":
        raise BackupError("an in-memory SQLite database cannot be backed up or restored", code="no_database_file")
    return Path(database)


def pg_env(url: str) -> dict[str, str]:
    """libpq's environment for the database of a SQLAlchemy URL: the password goes in PGPASSWORD
    (seen by the child process only), never on a command line. Without one, libpq reads
    ~/.pgpass (or PGPASSFILE)."""
    u = make_url(url)
    query = {k: (v[0] if isinstance(v, tuple) else v) for k, v in u.query.items()}
    env = {k: v for k, v in os.environ.items() if k not in _PG_WHERE}
    host = query.get("host") or u.host
    if host:
        env["PGHOST"] = str(host)
    if u.port:
        env["PGPORT"] = str(u.port)
    if u.username:
        env["PGUSER"] = u.username
    if u.password:
        env["PGPASSWORD"] = str(u.password)
    if u.database:
        env["PGDATABASE"] = u.database
    ssl = query.get("sslmode") or query.get("ssl")
    if ssl:
        env["PGSSLMODE"] = {"true": "require", "false": "disable"}.get(str(ssl).lower(), str(ssl))
    env["PGAPPNAME"] = "channelhub-backup"
    return env


def _tool(name: str) -> str:
    found = shutil.which(name)
    if found is None:
        raise BackupError(f"{name} is not installed: install PostgreSQL's client programs (Debian: apt-get install "
                          f"postgresql-client) of the server's major version or newer", code="pg_tools_missing")
    return found


async def _run(argv: list[str], env: dict[str, str], what: str) -> None:
    """A PostgreSQL client program as a child process (the loop goes on meanwhile); killed if the
    caller is cancelled."""
    proc = await asyncio.create_subprocess_exec(*argv, env=env, stdin=asyncio.subprocess.DEVNULL,
                                                stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
    try:
        out, err = await proc.communicate()
    except BaseException:
        with contextlib.suppress(ProcessLookupError):
            proc.kill()
        await proc.wait()
        raise
    if proc.returncode != 0:
        message = (err or out).decode(errors="replace").strip().splitlines()
        raise BackupError(f"{what} failed (exit {proc.returncode}): {' '.join(message[-3:])[:600]}",
                          code="backup_failed")


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as fh:
        while chunk := fh.read(_CHUNK):
            digest.update(chunk)
    return digest.hexdigest()


def _hub_version() -> str:
    from importlib import metadata

    try:
        return metadata.version("channelhub")
    except metadata.PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------------------------
# Taking a backup


def _dump_sqlite(source: Path, dest: Path) -> str | None:
    """SQLite's online backup API on a connection of our own, in one step: the whole copy reads one
    snapshot (in WAL mode the hub's writers go on meanwhile). Returns the alembic revision read
    from the copy, so it is the copy's."""
    if not source.exists():
        raise BackupError(f"there is no database at {source}", code="no_database_file")
    src = sqlite3.connect(source, timeout=30)
    try:
        dst = sqlite3.connect(dest)
        try:
            src.backup(dst, pages=-1)
            # The copy carries the source's WAL flag; a backup is one self-contained file.
            dst.execute("PRAGMA journal_mode=DELETE").fetchall()
            try:
                row = dst.execute("SELECT version_num FROM alembic_version").fetchone()
            except sqlite3.OperationalError:
                row = None
        finally:
            dst.close()
    finally:
        src.close()
    return str(row[0]) if row else None


async def _dump_pg(url: str, dest: Path) -> str | None:
    """``pg_dump --format=custom`` in a snapshot our own repeatable-read transaction exported: the
    alembic revision we read there is the dump's."""
    pg_dump = _tool("pg_dump")
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            conn = await conn.execution_options(isolation_level="REPEATABLE READ")
            async with conn.begin():
                snapshot = (await conn.execute(text("SELECT pg_export_snapshot()"))).scalar_one()
                try:
                    revision = (await conn.execute(text("SELECT version_num FROM alembic_version"))).scalar()
                except Exception:  # no alembic_version table: the snapshot is gone with the error
                    raise BackupError("the database has no schema yet (run channelhub migrate)",
                                      code="no_schema") from None
                # The exporting transaction stays open until pg_dump is done: it has imported the
                # snapshot once it started, but keeping it costs nothing and leaves no race.
                await _run([pg_dump, "--format=custom", "--no-password", f"--snapshot={snapshot}",
                            f"--file={dest}"], pg_env(url), "pg_dump")
    finally:
        await engine.dispose()
    return str(revision) if revision is not None else None


def _key_state(settings: Settings) -> tuple[dict[str, Any], Path | None]:
    """What the manifest says of the key, and the key file to include (if the key comes from one)."""
    fingerprint = secrets.key_fingerprint(settings)
    if settings.secret_key:
        return {"source": "environment", "fingerprint": fingerprint}, None
    path = Path(settings.secret_key_file)
    if path.exists():
        return {"source": "file", "fingerprint": fingerprint}, path
    return {"source": "none", "fingerprint": None}, None


def _assemble(dest_dir: Path, at: datetime, manifest: dict[str, Any], members: list[tuple[str, Path]],
              compress: bool) -> Path:
    """Write the tar under a hidden name (0600: it holds everything), fsync it, then link it to the
    first free final name: never a half file, never one overwritten."""
    dest_dir.mkdir(parents=True, exist_ok=True)
    tmp = dest_dir / f".{file_name(at)}.{os.getpid()}.partial"
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "wb") as raw:
            with tarfile.open(fileobj=raw, mode="w:gz" if compress else "w") as tar:
                body = json.dumps(manifest, indent=2, sort_keys=True).encode()
                info = tarfile.TarInfo(MANIFEST)
                info.size, info.mode, info.mtime = len(body), 0o600, int(at.timestamp())
                tar.addfile(info, io.BytesIO(body))
                for name, path in members:
                    info = tar.gettarinfo(str(path), arcname=name)
                    info.mode, info.uid, info.gid, info.uname, info.gname = 0o600, 0, 0, "", ""
                    with path.open("rb") as fh:
                        tar.addfile(info, fh)
            raw.flush()
            os.fsync(raw.fileno())
        n = 0
        while True:
            final = dest_dir / file_name(at, n)
            try:
                os.link(tmp, final)
                break
            except FileExistsError:
                n += 1
        with contextlib.suppress(OSError):
            dir_fd = os.open(dest_dir, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)
        return final
    finally:
        with contextlib.suppress(FileNotFoundError):
            tmp.unlink()


async def backup(settings: Settings, dest_dir: Path | str, *, now: datetime | None = None) -> Path:
    """Take a backup of the hub's database (and its key file) into ``dest_dir``; returns its path.
    Named by ``now`` (UTC), which is also its ``created_at``."""
    at = (now or datetime.now(UTC)).astimezone(UTC).replace(microsecond=0)
    dest_dir = Path(dest_dir)
    dest_dir.mkdir(parents=True, exist_ok=True)
    key_info, key_file = _key_state(settings)
    with tempfile.TemporaryDirectory(prefix=".channelhub-backup-", dir=dest_dir) as work:
        if settings.is_sqlite:
            member, dump = SQLITE_MEMBER, Path(work) / SQLITE_MEMBER
            revision = await asyncio.to_thread(_dump_sqlite, _sqlite_path(settings.database_url), dump)
        else:
            member, dump = PG_MEMBER, Path(work) / PG_MEMBER
            revision = await _dump_pg(settings.database_url, dump)
        members = [(member, dump)]
        if key_file is not None:
            # Copied first, so the hash and the bytes in the tar are of the same file.
            copy = Path(work) / KEY_MEMBER
            shutil.copyfile(key_file, copy)
            members.append((KEY_MEMBER, copy))
        hashes = {name: {"sha256": await asyncio.to_thread(_sha256, path), "bytes": path.stat().st_size}
                  for name, path in members}
        manifest = {
            "format": FORMAT,
            "format_version": FORMAT_VERSION,
            "hub_version": _hub_version(),
            "alembic_revision": revision,
            "database": kind(settings),
            "created_at": at.isoformat(),
            "members": hashes,
            "secret_key": key_info,
        }
        path = await asyncio.to_thread(_assemble, dest_dir, at, manifest, members, settings.is_sqlite)
    logger.info("backup written to %s", path)
    return path


def prune(dest_dir: Path | str, keep_days: int, *, now: datetime) -> list[Path]:
    """Delete our backups (by name) taken more than ``keep_days`` before ``now``; the newest is
    always kept, whatever its age (a clock set wrong must not leave none). Returns those deleted."""
    dest_dir = Path(dest_dir)
    if not dest_dir.is_dir():
        return []
    ours = sorted(((at, p) for p in dest_dir.iterdir() if (at := taken_at(p)) is not None and p.is_file()),
                  key=lambda pair: (pair[0], pair[1].name))
    cutoff = now - timedelta(days=keep_days)
    gone = []
    for at, path in ours[:-1]:
        if at < cutoff:
            path.unlink(missing_ok=True)
            gone.append(path)
    if gone:
        logger.info("pruned %d backup(s) older than %d days from %s", len(gone), keep_days, dest_dir)
    return gone


# ---------------------------------------------------------------------------------------------
# Restoring


def _corrupt(file: Path, why: str) -> BackupError:
    return BackupError(f"{file} is not a sound channelhub backup: {why}", code="backup_corrupt")


@contextlib.contextmanager
def _unpacked(file: Path) -> Iterator[tuple[dict[str, Any], dict[str, Path]]]:
    """The manifest and the members of a backup, unpacked into a temporary directory, every hash
    checked. Members are written by us under fixed names: nothing in the tar chooses a path."""
    if not file.is_file():
        raise BackupError(f"there is no file {file}", code="backup_missing")
    with tempfile.TemporaryDirectory(prefix=".channelhub-restore-") as work:
        try:
            with tarfile.open(file, mode="r:*") as tar:
                first = tar.next()
                if first is None or first.name != MANIFEST or not first.isfile():
                    raise _corrupt(file, f"its first member is not {MANIFEST}")
                fh = tar.extractfile(first)
                assert fh is not None
                manifest = json.loads(fh.read(1 << 20).decode())
                if not isinstance(manifest, dict) or manifest.get("format") != FORMAT:
                    raise _corrupt(file, "its manifest is not a channelhub backup's")
                if manifest.get("format_version") != FORMAT_VERSION:
                    raise BackupError(f"{file} has backup format {manifest.get('format_version')!r}; this channelhub "
                                      f"reads format {FORMAT_VERSION}", code="backup_format")
                expected: dict[str, dict[str, Any]] = manifest.get("members") or {}
                found: dict[str, Path] = {}
                while (member := tar.next()) is not None:
                    name = member.name
                    if name not in expected or name in found or not member.isfile():
                        raise _corrupt(file, f"unexpected member {name!r}")
                    src = tar.extractfile(member)
                    assert src is not None
                    target = Path(work) / name
                    found[name] = target
                    _copy_checked(src, target, expected[name], file, name)
                missing = sorted(set(expected) - set(found))
                if missing:
                    raise _corrupt(file, f"missing {', '.join(missing)}")
        except BackupError:
            raise
        except (tarfile.TarError, OSError, EOFError, zlib.error, ValueError, LookupError, TypeError,
                AttributeError) as exc:
            raise _corrupt(file, f"{type(exc).__name__}: {exc}") from None
        yield manifest, found


def _copy_checked(src: IO[bytes], target: Path, expected: dict[str, Any], file: Path, name: str) -> None:
    digest = hashlib.sha256()
    size = 0
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        while chunk := src.read(_CHUNK):
            digest.update(chunk)
            size += len(chunk)
            out.write(chunk)
    if digest.hexdigest() != expected.get("sha256") or size != expected.get("bytes"):
        raise _corrupt(file, f"{name} does not match its SHA-256 in the manifest (the file is damaged)")


def verify(file: Path | str) -> dict[str, Any]:
    """Read a backup through and check every hash; returns its manifest."""
    with _unpacked(Path(file)) as (manifest, _members):
        return manifest


def _check_revision(manifest: dict[str, Any]) -> None:
    from alembic.script import ScriptDirectory
    from alembic.util.exc import CommandError

    revision = manifest.get("alembic_revision")
    if revision is None:
        raise BackupError("the backup's database has no schema revision (it was never migrated)", code="no_schema")
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    try:
        script.get_revision(str(revision))
    except CommandError:
        raise BackupError(f"the backup's schema is at revision {revision}, which this channelhub does not know: "
                          f"it was made by a newer version ({manifest.get('hub_version')}); restore it with that "
                          f"version", code="backup_too_new") from None


def _check_key(settings: Settings, manifest: dict[str, Any], members: dict[str, Path]) -> Path | None:
    """Refuse a key that cannot decrypt the backup's channel credentials; returns where the
    backup's key file is to be written (None: nothing to write)."""
    wanted = (manifest.get("secret_key") or {}).get("fingerprint")
    if wanted is None:
        return None
    if settings.secret_key:
        if secrets.fingerprint(settings.secret_key) != wanted:
            raise BackupError("CHANNELHUB_SECRET_KEY is not the key this backup's channel credentials were encrypted "
                              f"with (its fingerprint is {wanted}): set the original key, or unset it to use the "
                              "backup's key file", code="key_mismatch")
        return None
    path = Path(settings.secret_key_file)
    if path.exists():
        if secrets.fingerprint(path.read_text()) != wanted:
            raise BackupError(f"{path} holds another key than the one this backup's channel credentials were "
                              f"encrypted with (fingerprint {wanted}); it is not overwritten: move it away or point "
                              f"CHANNELHUB_SECRET_KEY_FILE elsewhere", code="key_mismatch")
        return None
    if KEY_MEMBER not in members:
        raise BackupError(f"this backup's key came from CHANNELHUB_SECRET_KEY (fingerprint {wanted}), which is not "
                          f"set here: set it to the original key first", code="key_missing")
    return path


def _sqlite_objects(path: Path) -> int:
    if not path.exists() or path.stat().st_size == 0:
        return 0
    conn = sqlite3.connect(path, timeout=30)
    try:
        return int(conn.execute("SELECT count(*) FROM sqlite_master WHERE name NOT LIKE 'sqlite_%'").fetchone()[0])
    except sqlite3.DatabaseError as exc:
        raise BackupError(f"{path} is not an SQLite database: {exc}", code="target_not_empty") from None
    finally:
        conn.close()


async def _pg_objects(url: str) -> int:
    engine = create_async_engine(url, poolclass=NullPool)
    try:
        async with engine.connect() as conn:
            return int((await conn.execute(text(
                "SELECT count(*) FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace "
                "WHERE n.nspname NOT IN ('pg_catalog', 'information_schema') AND n.nspname NOT LIKE 'pg_toast%' "
                "AND n.nspname NOT LIKE 'pg_temp%' AND c.relkind IN ('r', 'p', 'v', 'm', 'S', 'f')"))).scalar_one())
    except DomainError:
        raise
    except Exception as exc:
        raise BackupError(f"cannot reach the target database {make_url(url).database!r}: {type(exc).__name__}: "
                          f"{str(exc).splitlines()[0] if str(exc) else ''} (create it empty first: createdb)",
                          code="target_unreachable") from None
    finally:
        await engine.dispose()


def _restore_sqlite(dump: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    src = sqlite3.connect(dump)
    try:
        dst = sqlite3.connect(target, timeout=30)
        try:
            src.backup(dst, pages=-1)
        finally:
            dst.close()
    finally:
        src.close()


async def restore(settings: Settings, file: Path | str) -> Restored:
    """Bring a backup back into the configured database, which must be empty. Checks come first;
    nothing is written unless all pass."""
    file = Path(file)
    with _unpacked(file) as (manifest, members):
        if manifest.get("database") != kind(settings):
            raise BackupError(f"this is a backup of a {manifest.get('database')} database; the hub is configured "
                              f"for {kind(settings)} (CHANNELHUB_DATABASE_URL)", code="wrong_database_kind")
        _check_revision(manifest)
        key_target = _check_key(settings, manifest, members)
        if settings.is_sqlite:
            target = _sqlite_path(settings.database_url)
            objects = await asyncio.to_thread(_sqlite_objects, target)
        else:
            objects = await _pg_objects(settings.database_url)
        if objects:
            raise BackupError(f"the target database is not empty ({objects} tables or other objects): restore "
                              f"only into a new, empty database", code="target_not_empty")
        if settings.is_sqlite:
            await asyncio.to_thread(_restore_sqlite, members[SQLITE_MEMBER], target)
        else:
            # One transaction: a restore that fails leaves the database empty, to try again.
            await _run([_tool("pg_restore"), "--no-owner", "--no-privileges", "--exit-on-error",
                        "--single-transaction", "--no-password", f"--dbname={make_url(settings.database_url).database}",
                        str(members[PG_MEMBER])], pg_env(settings.database_url), "pg_restore")
        result = Restored(manifest)
        if key_target is not None:
            key_target.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(key_target, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(members[KEY_MEMBER].read_bytes())
            result.key_written = key_target
        if (manifest.get("secret_key") or {}).get("source") == "none":
            result.warnings.append("the backup was made with no secret key: channel credentials, if any, were "
                                   "never encrypted")
    logger.info("restored %s (made %s, revision %s)", file, manifest.get("created_at"),
                manifest.get("alembic_revision"))
    return result


# ---------------------------------------------------------------------------------------------
# The schedule inside `serve`


async def scheduled(db: Database, settings: Settings, *, owner: str,
                    clock: Callable[[], datetime] = lambda: datetime.now(UTC)) -> Path | None:
    """Make the backup if one is due (the last began ``backup_interval`` or more ago) and this
    process takes the job's lease; every process may call this at any time. Returns the backup
    made, or None."""
    table = table_of(PeriodicJob)
    now = clock()
    due_before = now - timedelta(seconds=settings.backup_interval)
    lease = RowLease(db, table, lambda: table.c.name == "backup", owner_column="holder",
                     until_column="held_until", owner=owner, seconds=LEASE_SECONDS, clock=clock, label="backup",
                     takeable=lambda: or_(table.c.last_done_at.is_(None), table.c.last_done_at <= due_before))
    if not await lease.take():
        return None
    keeper = asyncio.create_task(lease.keep(), name="backup lease")
    work = asyncio.create_task(backup(settings, settings.backup_dir, now=now), name="backup")
    try:
        await asyncio.wait({work, keeper}, return_when=asyncio.FIRST_COMPLETED)
        if not work.done():
            logger.warning("backup abandoned: the lease was lost")
            work.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await work
            return None
        try:
            path = work.result()
        except Exception as exc:
            logger.error("scheduled backup failed: %s", exc)
            async with db.connection() as conn:
                await conn.execute(update(table).where(lease.mine()).values(
                    holder=f"waiting after a failure of {owner}"[:200],
                    held_until=now + timedelta(seconds=RETRY_SECONDS), last_error=str(exc)[:500]))
            lease.until = None
            return None
        await asyncio.to_thread(prune, settings.backup_dir, settings.backup_keep_days, now=now)
        async with db.connection() as conn:
            await conn.execute(update(table).where(lease.mine()).values(last_done_at=now, last_error=None))
        return path
    finally:
        for task in (keeper, work):
            task.cancel()
        with contextlib.suppress(asyncio.CancelledError, Exception):
            await keeper
        if lease.held:
            await lease.release()
