"""The SQLite queue and history: order, persistence, the crash rule, the history cap."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from diffusers_presets.runner.server.store import MAX_ATTEMPTS, QueueItem, SQLiteStore


def _item(prompt_id: str, number: float) -> QueueItem:
    return QueueItem(number, prompt_id, {"1": {"class_type": "X", "inputs": {}}}, {"client_id": "c"}, ["1"])


def _entry(item: QueueItem, status: str = "success") -> dict:
    return {"prompt": item.as_comfy(), "outputs": {}, "meta": {},
            "status": {"status_str": status, "completed": status == "success", "messages": []}}


def test_claims_in_number_order_front_first(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    for prompt_id, number in [("a", 1), ("b", 2), ("front", -3), ("c", 2)]:
        store.put(_item(prompt_id, number))
    order = [store.claim_next().prompt_id for _ in range(4)]
    assert order == ["front", "a", "b", "c"]  # equal numbers: queue order
    assert store.claim_next() is None


def test_pending_and_history_survive_reopening(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    store.put(_item("done", 1))
    store.put(_item("waiting", 2))
    item = store.claim_next()
    store.finish(item, _entry(item), 123)
    store.close()
    again = SQLiteStore(tmp_path / "q.db")
    assert [i.prompt_id for i in again.pending()] == ["waiting"]
    record = again.history_get("done")
    assert record.entry["prompt"][1] == "done" and record.start_ms == 123
    assert again.max_number() == 2


def test_running_prompt_is_requeued_once_then_failed(tmp_path: Path) -> None:
    path = tmp_path / "q.db"
    store = SQLiteStore(path)
    store.put(_item("crashy", 1))
    store.put(_item("next", 2))
    assert store.claim_next().prompt_id == "crashy"
    # the process dies here; on restart:
    assert SQLiteStore(path).recover() == ["crashy"]
    store = SQLiteStore(path)
    claimed = store.claim_next()
    assert claimed.prompt_id == "crashy" and claimed.attempts == MAX_ATTEMPTS
    # it dies again while running the same prompt:
    assert SQLiteStore(path).recover() == []
    store = SQLiteStore(path)
    failed = store.history_get("crashy").entry
    assert failed["status"]["status_str"] == "error" and not failed["status"]["completed"]
    event, data = failed["status"]["messages"][0]
    assert event == "execution_error" and "stopped 2 times" in data["exception_message"]
    assert [i.prompt_id for i in store.pending()] == ["next"]


def test_history_is_capped_oldest_first(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db", max_history=3)
    for n in range(5):
        store.put(_item(f"p{n}", n))
        item = store.claim_next()
        store.finish(item, _entry(item), None)
    assert [r.prompt_id for r in store.history()] == ["p2", "p3", "p4"]
    assert [r.prompt_id for r in store.history(max_items=2)] == ["p3", "p4"]
    assert [r.prompt_id for r in store.history(max_items=1, offset=1)] == ["p3"]


def test_history_age_limit(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db", max_history_age_s=60)
    store.put(_item("old", 1))
    item = store.claim_next()
    store.finish(item, _entry(item), None)
    with sqlite3.connect(tmp_path / "q.db") as db:
        db.execute("UPDATE history SET end_ms = end_ms - 3600000")
    store.put(_item("new", 2))
    item = store.claim_next()
    store.finish(item, _entry(item), None)
    assert [r.prompt_id for r in store.history()] == ["new"]


def test_delete_and_clear(tmp_path: Path) -> None:
    store = SQLiteStore(tmp_path / "q.db")
    for n in range(3):
        store.put(_item(f"p{n}", n))
    assert store.delete_pending(["p1", "unknown"]) == 1
    assert [i.prompt_id for i in store.pending()] == ["p0", "p2"]
    assert store.clear_pending() == 2 and store.pending_count() == 0
    store.put(_item("h", 9))
    item = store.claim_next()
    store.finish(item, _entry(item, "error"), None)
    assert store.finished_jobs(["failed"], 10, True)[1] == 1
    assert store.delete_history(["h"]) == 1 and store.history_count() == 0
