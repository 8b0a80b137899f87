"""The state's schema: each migration takes a state from schema n to n + 1. A new schema is a
new entry, never an edit of an old one; schema 0 is an empty file. SQL text only."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from archiver.errors import LocalError

# MIGRATIONS[n] takes a state from schema n to n + 1; a new schema is a new entry, never an
# edit of an old one. Schema 0 is an empty file.
_V1 = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL) WITHOUT ROWID;
CREATE TABLE IF NOT EXISTS calls (
    call_id TEXT PRIMARY KEY,
    status TEXT,              -- NULL while first in flight; else the outcome (manifest status)
    path TEXT, bytes INTEGER, sha256 TEXT, content_type TEXT, archived_at TEXT,
    attempts INTEGER NOT NULL DEFAULT 0,
    run_id TEXT,
    error_kind TEXT, error_message TEXT,
    seen_run TEXT             -- unused since schema 4 (the run that last took the id)
) WITHOUT ROWID;
CREATE INDEX IF NOT EXISTS calls_by_run ON calls (run_id);
CREATE TABLE IF NOT EXISTS invalid_rows (
    run_id TEXT NOT NULL, source TEXT NOT NULL, line INTEGER NOT NULL,
    reason TEXT NOT NULL, value TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS invalid_by_run ON invalid_rows (run_id);
"""
_V2 = """
-- .part files of calls in flight, so a run after a crash removes exactly those.
CREATE TABLE IF NOT EXISTS parts (call_id TEXT PRIMARY KEY, path TEXT NOT NULL) WITHOUT ROWID;
-- verify looks files up by path.
CREATE INDEX IF NOT EXISTS calls_by_path ON calls (path);
"""
_V3 = """
-- sidecars saved beside the recording (--with-metadata, --with-transcript).
ALTER TABLE calls ADD COLUMN metadata_path TEXT;
ALTER TABLE calls ADD COLUMN transcript_path TEXT;
"""
_V4 = """
-- Manifest parts (issue 12): `seq` is the order a call was first recorded in, its part
-- seq // PART_CALLS; `changed` the change number of its last outcome, so a run rewrites only
-- the parts holding calls changed since the manifest was last written.
ALTER TABLE calls ADD COLUMN seq INTEGER;
ALTER TABLE calls ADD COLUMN changed INTEGER;
-- Calls recorded before had no order: number them by call_id (portable SQL: no window
-- functions, no UPDATE FROM), and mark every one changed, so that the first run writes every
-- part once (the migration of the schema-1 manifest).
CREATE TEMP TABLE numbered (n INTEGER PRIMARY KEY, call_id TEXT NOT NULL);
INSERT INTO numbered (call_id) SELECT call_id FROM calls ORDER BY call_id;
CREATE UNIQUE INDEX temp.numbered_by_id ON numbered (call_id);
UPDATE calls SET changed = 1,
    seq = (SELECT n - 1 FROM numbered WHERE numbered.call_id = calls.call_id);
DROP TABLE numbered;
CREATE INDEX IF NOT EXISTS calls_by_seq ON calls (seq);
CREATE INDEX IF NOT EXISTS calls_by_changed ON calls (changed);
-- What each run takes first (pending, failed) without a scan of every call.
CREATE INDEX IF NOT EXISTS calls_to_retry ON calls (call_id) WHERE status IN ('pending', 'failed');
-- The manifest's parts as last written: the index (manifest.json) is rendered from these.
CREATE TABLE IF NOT EXISTS manifest_parts (
    part INTEGER PRIMARY KEY,
    calls INTEGER NOT NULL,
    sha256 TEXT NOT NULL,
    counts TEXT NOT NULL       -- JSON: calls per status in the part
);
"""
_V5 = """
-- The call's time (call_picked_at, else created_at; epoch seconds) as a listing or the call's
-- details gave it (issue 20): `check` finds the archived calls of a window by it (those the
-- listing no longer shows). NULL when unknown (every call recorded before).
ALTER TABLE calls ADD COLUMN started_at REAL;
CREATE INDEX IF NOT EXISTS calls_by_start ON calls (started_at) WHERE started_at IS NOT NULL;
"""
_V6 = """
-- Whether the body's MD5 was checked against its ETag (issue 23): 1 when the ETag was a plain
-- MD5 and matched, 0 when it could not be an MD5 (a multipart `-N` ETag, or none: no MD5 was
-- computed), NULL when unknown (recorded before, or rebuilt from a bucket).
ALTER TABLE calls ADD COLUMN md5_checked INTEGER;
"""
MIGRATIONS = (_V1, _V2, _V3, _V4, _V5, _V6)
SCHEMA_VERSION = len(MIGRATIONS)


def migrate(db: sqlite3.Connection, path: Path, *, readonly: bool) -> None:
    """Bring the state at `path` to SCHEMA_VERSION (a read-only one is only checked): one
    transaction per step. WAL for good (never switched back) and synchronous=FULL: a commit
    is fsynced (the WAL) before it returns, so a power cut loses no outcome the run has
    counted; NORMAL would lose everything since the last checkpoint."""
    version = db.execute("PRAGMA user_version").fetchone()[0]
    if version > SCHEMA_VERSION:
        raise LocalError(
            f"the archive state {path} has schema {version}, newer than this "
            f"osvi-archiver understands ({SCHEMA_VERSION}): upgrade osvi-archiver"
        )
    if readonly:
        if version < 1:
            raise LocalError(f"the archive state {path} is empty")
        return
    db.execute("PRAGMA journal_mode=WAL")
    db.execute("PRAGMA synchronous=FULL")
    for step in range(version, SCHEMA_VERSION):
        db.executescript(f"BEGIN; {MIGRATIONS[step]} PRAGMA user_version={step + 1}; COMMIT;")
