"""Durable prompt queue and history.

The routes and the worker talk to a :class:`PromptStore`; :class:`SQLiteStore` keeps both in one
SQLite file (stdlib ``sqlite3``, WAL), so pending prompts and history survive a restart. Another
backend (Redis, Postgres) only has to implement the protocol.

Crash rule (``recover``): a prompt that was running when the process died is queued again once,
at its old place. If it was already re-queued once (it was running at two crashes in a row), it
goes to history as failed with a message instead, so one poisonous prompt cannot crash-loop the
server.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional, Protocol

# The extra_data keys ComfyUI strips before a prompt goes to history (credentials).
SENSITIVE_EXTRA_KEYS = ("auth_token_comfy_org", "api_key_comfy_org")

# How many times a prompt may be claimed by a worker before a crash marks it failed.
MAX_ATTEMPTS = 2


class DuplicatePrompt(KeyError):
    """``put`` of a prompt id that is already queued."""


@dataclass
class QueueItem:
    """A queued prompt; ``as_comfy()`` is ComfyUI's queue item list."""

    number: float
    prompt_id: str
    prompt: dict
    extra_data: dict
    outputs_to_execute: list[str]
    created_ms: int = field(default_factory=lambda: int(time.time() * 1000))
    attempts: int = 0

    @property
    def client_id(self) -> Optional[str]:
        return self.extra_data.get("client_id") or None

    def as_comfy(self, strip_sensitive: bool = True) -> list:
        extra = self.extra_data
        if strip_sensitive:
            extra = {k: v for k, v in extra.items() if k not in SENSITIVE_EXTRA_KEYS}
        number = int(self.number) if float(self.number).is_integer() else self.number
        return [number, self.prompt_id, self.prompt, extra, list(self.outputs_to_execute)]


@dataclass
class HistoryRecord:
    """One finished prompt: ComfyUI's history entry plus the times /api/jobs reports."""

    prompt_id: str
    entry: dict  # {prompt, outputs, status, meta}
    created_ms: int
    start_ms: Optional[int]
    end_ms: Optional[int]

    @property
    def status_str(self) -> str:
        return self.entry["status"]["status_str"]


class PromptStore(Protocol):
    """What the server needs from a queue + history backend. Thread-safe: the event loop and
    the worker thread both call it."""

    def put(self, item: QueueItem) -> None: ...  # raises DuplicatePrompt
    def claim_next(self) -> Optional[QueueItem]: ...
    def finish(self, item: QueueItem, entry: dict, start_ms: Optional[int]) -> None: ...
    def pending(self) -> list[QueueItem]: ...
    def running(self) -> list[QueueItem]: ...
    def pending_count(self) -> int: ...
    def contains(self, prompt_id: str) -> bool: ...
    def delete_pending(self, prompt_ids: list[str]) -> int: ...
    def clear_pending(self) -> int: ...
    def max_number(self) -> float: ...
    def history(self, max_items: Optional[int] = None, offset: int = -1) -> list[HistoryRecord]: ...
    def history_get(self, prompt_id: str) -> Optional[HistoryRecord]: ...
    def history_count(self) -> int: ...
    def finished_jobs(self, statuses: list[str], limit: int, newest_first: bool) -> tuple[list[HistoryRecord], int]: ...
    def delete_history(self, prompt_ids: list[str]) -> int: ...
    def clear_history(self) -> int: ...
    def recover(self) -> list[str]: ...
    def close(self) -> None: ...


_SCHEMA = """
CREATE TABLE IF NOT EXISTS queue (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    number REAL NOT NULL,
    state TEXT NOT NULL DEFAULT 'pending',
    attempts INTEGER NOT NULL DEFAULT 0,
    created_ms INTEGER NOT NULL,
    item TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS queue_order ON queue (state, number, seq);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    prompt_id TEXT NOT NULL UNIQUE,
    created_ms INTEGER NOT NULL,
    start_ms INTEGER,
    end_ms INTEGER,
    job_status TEXT NOT NULL,
    entry TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS history_end ON history (end_ms);
CREATE INDEX IF NOT EXISTS history_jobs ON history (job_status, created_ms);
"""


def _dump(value: Any) -> str:
    return json.dumps(value, separators=(",", ":"), default=str)


def _item(row: sqlite3.Row) -> QueueItem:
    data = json.loads(row["item"])
    return QueueItem(
        number=row["number"],
        prompt_id=row["prompt_id"],
        prompt=data["prompt"],
        extra_data=data["extra_data"],
        outputs_to_execute=data["outputs_to_execute"],
        created_ms=row["created_ms"],
        attempts=row["attempts"],
    )


def _record(row: sqlite3.Row) -> HistoryRecord:
    return HistoryRecord(row["prompt_id"], json.loads(row["entry"]), row["created_ms"], row["start_ms"], row["end_ms"])


def job_status(entry: dict) -> str:
    """/api/jobs' status of a finished prompt: completed, failed or cancelled (interrupted)."""
    status = entry["status"]
    if status["status_str"] == "success":
        return "completed"
    if any(message[0] == "execution_interrupted" for message in status["messages"]):
        return "cancelled"
    return "failed"


def failed_entry(item: QueueItem, message: str, exception_type: str = "server_restart") -> dict:
    """A history entry for a prompt that never produced a result (ComfyUI's error shape)."""
    now = int(time.time() * 1000)
    error = {
        "prompt_id": item.prompt_id,
        "node_id": None,
        "node_type": None,
        "executed": [],
        "exception_message": message,
        "exception_type": exception_type,
        "traceback": [],
        "current_inputs": {},
        "current_outputs": [],
        "timestamp": now,
    }
    return {
        "prompt": item.as_comfy(),
        "outputs": {},
        "status": {"status_str": "error", "completed": False, "messages": [["execution_error", error]]},
        "meta": {},
    }


class SQLiteStore:
    """:class:`PromptStore` on one SQLite file. One connection behind a lock: every statement
    is short, and WAL with ``synchronous=NORMAL`` makes a commit survive a killed process."""

    def __init__(self, path: Path, max_history: int = 10000, max_history_age_s: float = 0) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self.max_history = max_history
        self.max_history_age_s = max_history_age_s
        self._lock = threading.Lock()
        self._db = sqlite3.connect(str(self.path), check_same_thread=False, isolation_level=None)
        self._db.row_factory = sqlite3.Row
        self._db.execute("PRAGMA journal_mode=WAL")
        self._db.execute("PRAGMA synchronous=NORMAL")
        self._db.executescript(_SCHEMA)

    def _tx(self, statements: list[tuple[str, tuple]]) -> list[sqlite3.Cursor]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                cursors = [self._db.execute(sql, args) for sql, args in statements]
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
            return cursors

    def _query(self, sql: str, args: tuple = ()) -> list[sqlite3.Row]:
        with self._lock:
            return self._db.execute(sql, args).fetchall()

    # --- queue ------------------------------------------------------------------------------------
    def put(self, item: QueueItem) -> None:
        payload = {"prompt": item.prompt, "extra_data": item.extra_data, "outputs_to_execute": item.outputs_to_execute}
        try:
            self._put(item, payload)
        except sqlite3.IntegrityError:
            raise DuplicatePrompt(item.prompt_id) from None

    def _put(self, item: QueueItem, payload: dict) -> None:
        self._tx([(
            "INSERT INTO queue (prompt_id, number, created_ms, item) VALUES (?, ?, ?, ?)",
            (item.prompt_id, item.number, item.created_ms, _dump(payload)),
        )])

    def claim_next(self) -> Optional[QueueItem]:
        with self._lock:
            self._db.execute("BEGIN IMMEDIATE")
            try:
                row = self._db.execute(
                    "SELECT * FROM queue WHERE state = 'pending' ORDER BY number, seq LIMIT 1"
                ).fetchone()
                if row is not None:
                    self._db.execute(
                        "UPDATE queue SET state = 'running', attempts = attempts + 1 WHERE seq = ?", (row["seq"],)
                    )
                self._db.execute("COMMIT")
            except BaseException:
                self._db.execute("ROLLBACK")
                raise
        if row is None:
            return None
        item = _item(row)
        item.attempts += 1
        return item

    def finish(self, item: QueueItem, entry: dict, start_ms: Optional[int]) -> None:
        now = int(time.time() * 1000)
        statements = [
            ("DELETE FROM queue WHERE prompt_id = ?", (item.prompt_id,)),
            (
                "INSERT OR REPLACE INTO history (prompt_id, created_ms, start_ms, end_ms, job_status, entry) "
                "VALUES (?, ?, ?, ?, ?, ?)",
                (item.prompt_id, item.created_ms, start_ms, now, job_status(entry), _dump(entry)),
            ),
            # Keep the newest max_history entries.
            (
                "DELETE FROM history WHERE seq <= (SELECT seq FROM history ORDER BY seq DESC LIMIT 1 OFFSET ?)",
                (self.max_history,),
            ),
        ]
        if self.max_history_age_s > 0:
            statements.append(("DELETE FROM history WHERE end_ms < ?", (now - int(self.max_history_age_s * 1000),)))
        self._tx(statements)

    def pending(self) -> list[QueueItem]:
        return [_item(r) for r in self._query("SELECT * FROM queue WHERE state = 'pending' ORDER BY number, seq")]

    def running(self) -> list[QueueItem]:
        return [_item(r) for r in self._query("SELECT * FROM queue WHERE state = 'running' ORDER BY seq")]

    def pending_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM queue WHERE state = 'pending'")[0][0]

    def contains(self, prompt_id: str) -> bool:
        return bool(
            self._query("SELECT 1 FROM queue WHERE prompt_id = ?", (prompt_id,))
            or self._query("SELECT 1 FROM history WHERE prompt_id = ?", (prompt_id,))
        )

    def delete_pending(self, prompt_ids: list[str]) -> int:
        statements = [("DELETE FROM queue WHERE state = 'pending' AND prompt_id = ?", (pid,)) for pid in prompt_ids]
        return sum(c.rowcount for c in self._tx(statements)) if statements else 0

    def clear_pending(self) -> int:
        return self._tx([("DELETE FROM queue WHERE state = 'pending'", ())])[0].rowcount

    def max_number(self) -> float:
        return self._query("SELECT COALESCE(MAX(number), 0) FROM queue")[0][0]

    # --- history ----------------------------------------------------------------------------------
    def history(self, max_items: Optional[int] = None, offset: int = -1) -> list[HistoryRecord]:
        """Oldest first, like ComfyUI: a negative offset with ``max_items`` means the newest
        ``max_items``; otherwise ``max_items`` entries from ``offset``."""
        if offset < 0 and max_items is not None:
            rows = self._query("SELECT * FROM history ORDER BY seq DESC LIMIT ?", (max_items,))
            rows.reverse()
        else:
            limit = -1 if max_items is None else max_items
            rows = self._query("SELECT * FROM history ORDER BY seq LIMIT ? OFFSET ?", (limit, max(offset, 0)))
        return [_record(r) for r in rows]

    def history_get(self, prompt_id: str) -> Optional[HistoryRecord]:
        rows = self._query("SELECT * FROM history WHERE prompt_id = ?", (prompt_id,))
        return _record(rows[0]) if rows else None

    def history_count(self) -> int:
        return self._query("SELECT COUNT(*) FROM history")[0][0]

    def finished_jobs(self, statuses: list[str], limit: int, newest_first: bool) -> tuple[list[HistoryRecord], int]:
        """The first ``limit`` finished prompts with a job status in ``statuses``, and how many
        there are in all."""
        marks = ",".join("?" * len(statuses))
        order = "DESC" if newest_first else "ASC"
        rows = self._query(
            f"SELECT * FROM history WHERE job_status IN ({marks}) ORDER BY created_ms {order}, seq {order} LIMIT ?",
            (*statuses, limit),
        )
        total = self._query(f"SELECT COUNT(*) FROM history WHERE job_status IN ({marks})", tuple(statuses))[0][0]
        return [_record(r) for r in rows], total

    def delete_history(self, prompt_ids: list[str]) -> int:
        statements = [("DELETE FROM history WHERE prompt_id = ?", (pid,)) for pid in prompt_ids]
        return sum(c.rowcount for c in self._tx(statements)) if statements else 0

    def clear_history(self) -> int:
        return self._tx([("DELETE FROM history", ())])[0].rowcount

    # --- restart ----------------------------------------------------------------------------------
    def recover(self) -> list[str]:
        """Apply the crash rule to prompts left 'running'; returns the ids re-queued."""
        requeued = []
        for item in self.running():
            if item.attempts >= MAX_ATTEMPTS:
                entry = failed_entry(
                    item,
                    f"The server stopped {item.attempts} times while running this prompt, so it was not "
                    "run again. Check the server log for the cause, then queue it again.",
                )
                self.finish(item, entry, None)
            else:
                self._tx([("UPDATE queue SET state = 'pending' WHERE prompt_id = ?", (item.prompt_id,))])
                requeued.append(item.prompt_id)
        return requeued

    def close(self) -> None:
        with self._lock:
            self._db.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            self._db.close()
