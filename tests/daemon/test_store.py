"""The night store: real SQLite on disk, one writer thread, atomic close into the outbox."""

from __future__ import annotations

import sqlite3
import threading

import pytest

from device.detect.events import Interval, LegMovement, PostureSegment
from device.store import LegEvents, NightInfo, Progress, Store

INFO = NightInfo("2026-03-01", "2026-03-01T22:00:00+01:00", "2026-03-01T23:00:00+01:00", "Europe/Berlin",
                 3600.0, True, "WASM2016", {"chip": "LSM6DSOX"})


def test_database_is_wal_with_small_pages(store):
    store.flush()
    conn = sqlite3.connect(store.path)
    assert conn.execute("pragma journal_mode").fetchone()[0] == "wal"
    assert conn.execute("pragma page_size").fetchone()[0] == 1024


def test_events_are_committed_as_they_are_queued(store):
    assert store.open_night(INFO, "t0") is True
    seg = store.begin_segment(INFO.night, 1.0)
    store.save_progress(Progress(INFO.night, seg, 60.0, 3000, [LegEvents(
        0, [LegMovement(10.0, 12.0, 0)], [PostureSegment(0.0, 40.0, "lying")], [Interval(30.0, 31.0)])],
        {0: PostureSegment(40.0, 60.0, "upright")}))
    store.flush()
    # another connection (as after a kill -9) sees it all
    conn = sqlite3.connect(store.path)
    assert conn.execute("select count(*) from movements").fetchone()[0] == 1
    assert conn.execute("select end_s, samples from segments").fetchone() == (60.0, 3000)
    # until the segment ends cleanly, its open posture counts
    stored = store.call(lambda db: store.load_night(db, INFO.night))
    assert [p.posture for p in stored.postures] == ["lying", "upright"]


def test_open_posture_is_trimmed_by_closed_ones_and_cleared_at_a_clean_end(store):
    store.open_night(INFO, "t0")
    seg = store.begin_segment(INFO.night, 0.0)
    store.save_progress(Progress(INFO.night, seg, 60.0, 1, open_postures={0: PostureSegment(0.0, 55.0, "lying")}))
    # the lying posture closes at 70 s and an upright one opens: both in one write
    store.save_progress(Progress(INFO.night, seg, 90.0, 2, [LegEvents(0, postures=[PostureSegment(0.0, 70.0, "lying")])],
                                 {0: PostureSegment(70.0, 90.0, "upright")}))
    stored = store.call(lambda db: store.load_night(db, INFO.night))
    assert stored.postures == [PostureSegment(0.0, 70.0, "lying"), PostureSegment(70.0, 90.0, "upright")]
    store.save_progress(Progress(INFO.night, seg, 96.0, 4, [LegEvents(0, postures=[PostureSegment(70.0, 96.0, "upright")])],
                                 final=True))
    assert store.call(lambda db: db["open_postures"].count) == 0


def test_reopening_a_night_resumes_it(tmp_path):
    s = Store(tmp_path / "night.db")
    s.start()
    assert s.open_night(INFO, "t0") is True
    s.add_marker(INFO.night, 5.0)
    s.close()
    s = Store(tmp_path / "night.db")
    s.start()
    assert s.open_night(INFO, "t1") is False
    assert s.add_marker(INFO.night, 9.0) == "lights_on"
    stored = s.call(lambda db: s.load_night(db, INFO.night))
    assert stored.markers == [(5.0, "lights_off"), (9.0, "lights_on")]
    s.close()


def test_close_night_puts_summary_in_outbox_once(store):
    store.open_night(INFO, "t0")
    seg = store.begin_segment(INFO.night, 0.0)
    store.save_progress(Progress(INFO.night, seg, 50.0, 1, [LegEvents(0, [LegMovement(10.0, 12.0), LegMovement(40.0, 41.0)])]))

    def build(stored):
        return "rlsmon/v1/d/summary", {"summary_id": "abc", "n": len(stored.movements)}

    assert store.close_night(INFO.night, build, "t9") == "abc"
    assert store.close_night(INFO.night, build, "t9") is None
    assert store.is_closed(INFO.night)
    [waiting] = store.outbox_waiting()
    row = store.outbox_row(waiting.id)
    assert row.topic == "rlsmon/v1/d/summary" and '"n": 2' in row.payload and row.summary_id == "abc"
    assert store.receipt("not-ours", "t10") is None  # a receipt for an unknown summary is ignored
    assert store.outbox_count() == 1
    assert store.receipt("abc", "t10") == INFO.night
    assert store.outbox_count() == 0
    assert store.receipt("abc", "t11") is None  # a second receipt (for a re-send) changes nothing
    assert store.call(lambda db: db["nights"].get(INFO.night)["receipted_at"]) == "t10"


def test_closing_a_night_and_dropping_a_receipted_summary_commit_with_synchronous_full(store):
    def synchronous(db):
        return db.execute("PRAGMA synchronous").fetchone()[0]

    assert store.call(synchronous) == 1  # NORMAL
    assert store.call(synchronous, durable=True) == 2  # FULL, for that batch only
    assert store.call(synchronous) == 1


def _night(night: str) -> NightInfo:
    return NightInfo(night, f"{night}T22:00:00+00:00", f"{night}T23:00:00+00:00", "UTC", 3600.0, True, "WASM2016")


def test_prune_drops_only_receipted_nights_before_the_cutoff_with_their_events(store):
    for night in ("2026-01-01", "2026-01-02", "2026-01-03", "2026-02-01"):
        store.open_night(_night(night), "t0")
        seg = store.begin_segment(night, 0.0)
        store.save_progress(Progress(night, seg, 50.0, 1, [LegEvents(0, [LegMovement(10.0, 12.0)])]))
        store.add_marker(night, 5.0)
        store.close_night(night, lambda stored, night=night: ("t", {"summary_id": f"id-{night}"}), "t1")
    for night in ("2026-01-01", "2026-01-03", "2026-02-01"):
        store.receipt(f"id-{night}", "t2")
    # 2026-01-02 has no receipt: kept however old; 2026-02-01 is receipted but recent
    assert store.prune("2026-01-15") == ["2026-01-01", "2026-01-03"]
    nights = store.call(lambda db: [r["night"] for r in db.query("select night from nights order by night")])
    assert nights == ["2026-01-02", "2026-02-01"]
    for table in ("segments", "movements", "markers"):
        left = store.call(lambda db, t=table: sorted({r["night"] for r in db.query(f"select night from {t}")}))
        assert left == ["2026-01-02", "2026-02-01"], table
    assert store.outbox_count() == 1
    assert store.prune("2026-01-15") == []


def test_an_older_store_gets_summary_ids_on_its_waiting_summaries(tmp_path):
    """A store written before receipts existed: its outbox rows get their night's summary_id."""
    s = Store(tmp_path / "night.db")
    s.start()
    s.open_night(INFO, "t0")
    s.close_night(INFO.night, lambda stored: ("t", {"summary_id": "abc"}), "t1")
    s.close()
    conn = sqlite3.connect(tmp_path / "night.db")
    conn.execute("update outbox set summary_id = null")
    conn.execute("delete from _sqlite_migrations where name = 'm003_receipts'")
    conn.execute("drop index idx_outbox_summary_id")
    conn.execute("alter table outbox drop column summary_id")
    conn.execute("alter table nights drop column receipted_at")
    conn.commit()
    conn.close()
    s = Store(tmp_path / "night.db")
    s.start()
    assert [w.summary_id for w in s.outbox_waiting()] == ["abc"]
    assert s.receipt("abc", "t2") == INFO.night
    s.close()


def test_failed_summary_build_leaves_night_open_and_outbox_empty(store):
    store.open_night(INFO, "t0")

    def build(stored):
        raise ValueError("scoring blew up")

    with pytest.raises(ValueError):
        store.close_night(INFO.night, build, "t9")
    assert not store.is_closed(INFO.night)
    assert store.outbox_count() == 0


def test_many_threads_write_through_one_writer(store):
    store.open_night(INFO, "t0")
    seg = store.begin_segment(INFO.night, 0.0)

    def worker(leg):
        for i in range(50):
            store.save_progress(Progress(INFO.night, seg, float(i), i, [LegEvents(leg, [LegMovement(float(i), i + 0.6, leg)])]))

    threads = [threading.Thread(target=worker, args=(k,)) for k in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    store.flush()
    stored = store.call(lambda db: store.load_night(db, INFO.night))
    assert len(stored.movements) == 200
