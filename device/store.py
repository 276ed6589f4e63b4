"""The night on disk: SQLite through sqlite-utils, in WAL mode, owned by one writer thread.

Sensor, paho and gpiozero callbacks run on threads of their own; they never touch the connection
but queue work to the writer (`submit`, `call`), which batches whatever is queued into one
transaction. What is committed survives a kill -9; the daemon commits its progress every minute,
one transaction each, and small pages (1 KiB) keep the bytes each one writes to the SD card small.

Tables: `nights` (one row per night, closed when its summary is built), `segments` (spans the
daemon was recording: their complement in the window is coverage gaps), `gaps` (gaps the detector
saw inside a segment), `movements`, `postures`, `markers` (the button), `wear_epochs` (each leg's
minutes of temperature and stillness, device/wear.py), `outbox` (summaries the collector has not
yet receipted, drained in id order), and `sits` (each evening's Suggested Immobilization Test,
device/sit.py, whose result shares the outbox). A broker's PUBACK is not a receipt: a row goes
only when the collector's receipt for its `summary_id` arrives (docs/receipts.md).

Durability: WAL with `synchronous=NORMAL` may lose the last commits (never corrupt the file) on a
power cut, which costs at most a minute of recording. The two transactions that must not be undone,
closing a night (its summary enters the outbox) and dropping a receipted summary, run with
`synchronous=FULL`: their commit is on the SD card before they return.
"""

from __future__ import annotations

import datetime as dt
import json
import logging
import queue
import threading
from collections.abc import Callable
from concurrent.futures import Future
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from device.detect.events import Interval, LegMovement, PostureSegment
from device.wear import WearEpoch

log = logging.getLogger(__name__)
T = TypeVar("T")
PAGE_SIZE = 1024  # bytes; a smaller page means fewer bytes written per small transaction
_BATCH = 256  # most queued jobs folded into one transaction


@dataclass(frozen=True)
class NightInfo:
    """What is known about a night when it opens: its window and the recording set-up."""

    night: str  # YYYY-MM-DD, the evening's date
    window_start: str  # ISO 8601 with offset
    window_end: str
    timezone: str
    duration_s: float
    clock_synced: bool
    rules: str
    sensor: dict[str, Any] = field(default_factory=dict)


@dataclass(frozen=True)
class Segment:
    """A span the daemon was recording, with the samples it received (all legs)."""

    start_s: float
    end_s: float
    samples: int


@dataclass(frozen=True)
class LegEvents:
    """What one leg's detector completed: movements, closed postures, gaps."""

    leg: int
    movements: list[LegMovement] = field(default_factory=list)
    postures: list[PostureSegment] = field(default_factory=list)
    gaps: list[Interval] = field(default_factory=list)


@dataclass(frozen=True)
class Progress:
    """A recording segment's progress since the last write."""

    night: str
    segment_id: int
    end_s: float
    samples: int
    events: list[LegEvents] = field(default_factory=list)
    open_postures: dict[int, PostureSegment] = field(default_factory=dict)  # by leg, when changed
    final: bool = False  # the segment has ended cleanly
    wear_epochs: list[tuple[int, WearEpoch]] = field(default_factory=list)  # (leg, epoch) completed


@dataclass(frozen=True)
class StoredNight:
    """Everything stored about one night: what its summary is built from."""

    info: NightInfo
    segments: list[Segment]
    gaps: list[Interval]
    movements: list[LegMovement]
    postures: list[PostureSegment]
    markers: list[tuple[float, str]]
    wear_epochs: dict[int, list[WearEpoch]] = field(default_factory=dict)  # by leg, by start
    sits: list[Interval] = field(default_factory=list)  # the evening test's span, when one was taken


@dataclass(frozen=True)
class SitRow:
    """One evening's SIT as stored: its state and its moments (Unix times)."""

    evening: str  # YYYY-MM-DD
    state: str  # device.sit: offered, running, ended, not_taken, closed
    offered_at: float
    started_at: float | None = None
    ended_at: float | None = None
    ended_early: bool = False


@dataclass(frozen=True)
class Waiting:
    """A summary in the outbox, without its payload: what the uplink schedules by."""

    id: int
    night: str
    summary_id: str


@dataclass(frozen=True)
class OutboxRow:
    """One summary waiting for the collector's receipt."""

    id: int
    topic: str
    payload: str
    night: str
    summary_id: str


def _migrate(db: Any) -> None:
    from sqlite_utils.migrations import Migrations

    migrations = Migrations("rlsmon-device-store")

    @migrations()
    def m001_initial(db: Any) -> None:
        db["nights"].create({"night": str, "window_start": str, "window_end": str, "timezone": str,
                             "duration_s": float, "clock_synced": int, "rules": str, "sensor": str,
                             "opened_at": str, "closed_at": str, "summary_id": str}, pk="night")
        db["segments"].create({"id": int, "night": str, "start_s": float, "end_s": float, "samples": int},
                              pk="id", foreign_keys=[("night", "nights")])
        db["gaps"].create({"id": int, "night": str, "start_s": float, "end_s": float}, pk="id",
                          foreign_keys=[("night", "nights")])
        db["movements"].create({"id": int, "night": str, "leg": int, "onset_s": float, "offset_s": float,
                                "peak_dps": float, "tilt_deg": float}, pk="id", foreign_keys=[("night", "nights")])
        db["postures"].create({"id": int, "night": str, "start_s": float, "end_s": float, "posture": str},
                              pk="id", foreign_keys=[("night", "nights")])
        db["markers"].create({"id": int, "night": str, "t_s": float, "kind": str}, pk="id",
                             foreign_keys=[("night", "nights")])
        db["outbox"].create({"id": int, "night": str, "topic": str, "payload": str, "created_at": str},
                            pk="id")

    @migrations()
    def m002_open_postures(db: Any) -> None:
        # The posture each leg of a recording segment is in right now, until the segment's end:
        # after a kill -9 it is all that says the patient was lying in that segment. Written only
        # when it changes; its end is the segment's. The key is segment_id * 2 + leg (one page).
        db["open_postures"].create({"id": int, "segment_id": int, "leg": int, "night": str,
                                    "start_s": float, "posture": str}, pk="id")

    @migrations()
    def m003_receipts(db: Any) -> None:
        # The outbox is keyed by the summary_id a receipt names; a night remembers its receipt, so
        # pruning keeps every night the collector has not confirmed.
        db["outbox"].add_column("summary_id", str)
        db.execute("update outbox set summary_id = (select n.summary_id from nights n where n.night = outbox.night)")
        db["outbox"].create_index(["summary_id"], unique=True)
        db["nights"].add_column("receipted_at", str)

    @migrations()
    def m004_wear_epochs(db: Any) -> None:
        # One row per leg and minute: the mean temperature (null when none was read) and the
        # largest per-axis SD of the acceleration; the summary's not-worn spans come from these.
        db["wear_epochs"].create({"id": int, "night": str, "leg": int, "start_s": float, "temp_c": float,
                                  "accel_sd_g": float}, pk="id", foreign_keys=[("night", "nights")])

    @migrations()
    def m005_sits(db: Any) -> None:
        # The Suggested Immobilization Test of an evening (device/sit.py): its state survives a
        # kill -9, and its result goes through the same outbox and receipt as a night.
        db["sits"].create({"evening": str, "state": str, "offered_at": float, "started_at": float,
                           "ended_at": float, "ended_early": int, "closed_at": str, "summary_id": str},
                          pk="evening")

    migrations.apply(db)


class Store:
    """The night store. `start()` opens it on the writer thread; every method is thread-safe."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self._jobs: queue.Queue = queue.Queue()
        self._thread: threading.Thread | None = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    # --- the writer thread -------------------------------------------------------------------
    def start(self) -> None:
        """Open (creating if need be) the database on the writer thread; raise if that fails."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._thread = threading.Thread(target=self._run, name="store-writer", daemon=True)
        self._thread.start()
        self._started.wait()
        if self._error is not None:
            raise self._error

    def _open(self) -> Any:
        import sqlite_utils

        db = sqlite_utils.Database(self.path)
        if not db.table_names():
            db.execute(f"PRAGMA page_size={PAGE_SIZE}")  # only takes effect before the first table
        db.enable_wal()
        db.execute("PRAGMA synchronous=NORMAL")  # WAL: durable at checkpoints, never corrupt
        _migrate(db)
        return db

    def _run(self) -> None:
        try:
            db = self._open()
        except BaseException as exc:  # reported to start()'s caller
            self._error = exc
            self._started.set()
            return
        self._started.set()
        while True:
            batch = [self._jobs.get()]
            while len(batch) < _BATCH:
                try:
                    batch.append(self._jobs.get_nowait())
                except queue.Empty:
                    break
            stop = any(job is None for job in batch)
            jobs = [job for job in batch if job is not None]
            durable = any(job[2] for job in jobs)
            if durable:  # set outside the transaction; the batch's COMMIT then waits for the fsync
                db.execute("PRAGMA synchronous=FULL")
            self._run_batch(db, jobs)
            if durable:
                db.execute("PRAGMA synchronous=NORMAL")
            if stop:
                db.close()
                return

    @staticmethod
    def _run_batch(db: Any, jobs: list[tuple[Callable, Future, bool]]) -> None:
        # One transaction for the batch; each job in a savepoint so one failure loses only itself.
        results: list[tuple[Future, Any, BaseException | None]] = []
        try:
            with db.atomic():
                for fn, fut, _ in jobs:
                    try:
                        with db.atomic():
                            results.append((fut, fn(db), None))
                    except Exception as exc:
                        results.append((fut, None, exc))
        except Exception as exc:  # the COMMIT itself failed (disk full, I/O error)
            log.error("night store: a write failed and was rolled back: %s", exc)
            results = [(fut, None, exc) for fut, _, _ in results]
        for fut, value, exc in results:
            if exc is None:
                fut.set_result(value)
            else:
                fut.set_exception(exc)

    def submit(self, fn: Callable[[Any], T], durable: bool = False) -> Future:
        """Queue `fn(db)` to run on the writer thread, in a transaction; returns its Future.
        `durable` commits that transaction with `synchronous=FULL` (it survives a power cut)."""
        if self._thread is None or not self._thread.is_alive():
            raise RuntimeError("the night store is not running")
        fut: Future = Future()
        self._jobs.put((fn, fut, durable))
        return fut

    def call(self, fn: Callable[[Any], T], timeout_s: float = 30.0, durable: bool = False) -> T:
        """Run `fn(db)` on the writer thread and return its result."""
        return self.submit(fn, durable).result(timeout_s)

    def write(self, fn: Callable[[Any], Any]) -> None:
        """Queue `fn(db)` without waiting; a failure is logged (it never reaches the caller)."""
        self.submit(fn).add_done_callback(_log_failure)

    def flush(self, timeout_s: float = 30.0) -> None:
        """Return once everything queued so far is committed."""
        self.call(lambda db: None, timeout_s)

    def close(self, timeout_s: float = 30.0) -> None:
        """Commit what is queued and close the database."""
        if self._thread is not None and self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join(timeout_s)

    # --- the night --------------------------------------------------------------------------
    def open_night(self, info: NightInfo, now_iso: str) -> bool:
        """Make `info.night` the open night; False when it exists already (a resumed night)."""

        def fn(db: Any) -> bool:
            if db["nights"].count_where("night = ?", [info.night]):
                return False
            db["nights"].insert({"night": info.night, "window_start": info.window_start,
                                 "window_end": info.window_end, "timezone": info.timezone,
                                 "duration_s": info.duration_s, "clock_synced": int(info.clock_synced),
                                 "rules": info.rules, "sensor": json.dumps(info.sensor),
                                 "opened_at": now_iso, "closed_at": None, "summary_id": None})
            return True

        return self.call(fn)

    def is_closed(self, night: str) -> bool:
        """Whether the night's summary has been built (it is in the outbox or already receipted)."""
        return self.call(lambda db: bool(db["nights"].count_where(
            "night = ? and closed_at is not null", [night])))

    def begin_segment(self, night: str, start_s: float) -> int:
        """Start a recording span at `start_s`; returns its id for `save_progress`."""
        return self.call(lambda db: db["segments"].insert(
            {"night": night, "start_s": start_s, "end_s": start_s, "samples": 0}).last_pk)

    def save_progress(self, progress: Progress) -> None:
        """Write a recording segment's progress, its completed events and its open postures, in one
        transaction (one job, so the writer cannot split it)."""
        p = progress

        def fn(db: Any) -> None:
            db["segments"].update(p.segment_id, {"end_s": p.end_s, "samples": p.samples})
            for ev in p.events:
                if ev.postures:  # the leg's open posture now starts after the closed ones
                    db.execute("update open_postures set start_s = max(start_s, ?) where segment_id = ? and leg = ?",
                               [max(x.end_s for x in ev.postures), p.segment_id, ev.leg])
                db["movements"].insert_all({"night": p.night, "leg": m.leg, "onset_s": m.onset_s,
                                            "offset_s": m.offset_s, "peak_dps": m.peak_dps,
                                            "tilt_deg": m.tilt_deg} for m in ev.movements)
                db["postures"].insert_all({"night": p.night, "start_s": x.start_s, "end_s": x.end_s,
                                           "posture": x.posture} for x in ev.postures)
                db["gaps"].insert_all({"night": p.night, "start_s": g.start_s, "end_s": g.end_s} for g in ev.gaps)
            db["wear_epochs"].insert_all({"night": p.night, "leg": leg, "start_s": e.start_s, "temp_c": e.temp_c,
                                          "accel_sd_g": e.accel_sd_g} for leg, e in p.wear_epochs)
            if p.final:  # the segment ended cleanly: every posture is closed and stored
                db["open_postures"].delete_where("segment_id = ?", [p.segment_id])
            for leg, posture in p.open_postures.items():
                db["open_postures"].upsert({"id": p.segment_id * 2 + leg, "segment_id": p.segment_id, "leg": leg,
                                            "night": p.night, "start_s": posture.start_s,
                                            "posture": posture.posture}, pk="id")

        self.write(fn)

    def add_marker(self, night: str, t_s: float) -> str:
        """Record a button press at `t_s`: lights_off, then lights_on, alternately. Returns the kind."""

        def fn(db: Any) -> str:
            last = list(db.query("select kind from markers where night = ? order by t_s desc limit 1",
                                 [night]))
            kind = "lights_on" if last and last[0]["kind"] == "lights_off" else "lights_off"
            db["markers"].insert({"night": night, "t_s": t_s, "kind": kind})
            return kind

        return self.call(fn)

    def load_night(self, db: Any, night: str) -> StoredNight:
        """Everything stored for `night`. Runs on the writer thread (pass the `db` it hands you)."""
        row = db["nights"].get(night)
        start = dt.datetime.fromisoformat(row["window_start"]).timestamp()
        info = NightInfo(night=row["night"], window_start=row["window_start"], window_end=row["window_end"],
                         timezone=row["timezone"], duration_s=row["duration_s"],
                         clock_synced=bool(row["clock_synced"]), rules=row["rules"],
                         sensor=json.loads(row["sensor"]))

        def rows(table: str, order: str) -> Any:
            return db[table].rows_where("night = ?", [night], order_by=order)

        return StoredNight(
            info=info,
            segments=[Segment(r["start_s"], r["end_s"], r["samples"]) for r in rows("segments", "start_s")],
            gaps=[Interval(r["start_s"], r["end_s"]) for r in rows("gaps", "start_s")],
            movements=[LegMovement(r["onset_s"], r["offset_s"], r["leg"], r["peak_dps"], r["tilt_deg"])
                       for r in rows("movements", "onset_s")],
            postures=sorted([PostureSegment(r["start_s"], r["end_s"], r["posture"])
                             for r in [*rows("postures", "start_s"), *db.query(
                                 "select o.start_s, s.end_s, o.posture from open_postures o "
                                 "join segments s on s.id = o.segment_id where o.night = ?", [night])]
                             if r["end_s"] > r["start_s"]], key=lambda p: p.start_s),
            markers=[(r["t_s"], r["kind"]) for r in rows("markers", "t_s")],
            wear_epochs=_by_leg(rows("wear_epochs", "leg, start_s")),
            sits=[Interval(r["started_at"] - start, r["ended_at"] - start) for r in db.query(
                "select started_at, ended_at from sits where evening = ? and started_at is not null "
                "and ended_at is not null", [night])],
        )

    def close_night(self, night: str, build: Callable[[StoredNight], tuple[str, dict]],
                    now_iso: str) -> str | None:
        """Build the summary from what is stored and put it in the outbox, closing the night, all in
        one transaction. `build` returns (topic, summary). Returns the summary_id, or None when the
        night was already closed."""

        def fn(db: Any) -> str | None:
            if db["nights"].get(night)["closed_at"] is not None:
                return None
            topic, summary = build(self.load_night(db, night))
            db["outbox"].insert({"night": night, "topic": topic, "payload": json.dumps(summary),
                                 "created_at": now_iso, "summary_id": summary["summary_id"]})
            db["nights"].update(night, {"closed_at": now_iso, "summary_id": summary["summary_id"]})
            return summary["summary_id"]

        return self.call(fn, durable=True)

    # --- the evening test (SIT) ------------------------------------------------------------------
    def sit(self, evening: str) -> SitRow | None:
        """The SIT of `evening`, or None when none was offered."""

        def fn(db: Any) -> SitRow | None:
            for r in db.query("select * from sits where evening = ?", [evening]):
                return SitRow(r["evening"], r["state"], r["offered_at"], r["started_at"], r["ended_at"],
                              bool(r["ended_early"]))
            return None

        return self.call(fn)

    def put_sit(self, row: SitRow) -> None:
        """Write the SIT's state (a transition of device.sit's state machine) and wait for the commit."""
        self.call(lambda db: db["sits"].upsert(
            {"evening": row.evening, "state": row.state, "offered_at": row.offered_at,
             "started_at": row.started_at, "ended_at": row.ended_at, "ended_early": int(row.ended_early)},
            pk="evening"))

    def close_sit(self, row: SitRow, night: str | None,
                  build: Callable[[StoredNight | None], tuple[str, dict]], now_iso: str) -> str | None:
        """Build the SIT's result from the stored `night` (None: no night recorded it) and put it in
        the outbox, closing the SIT, in one durable transaction. Returns the summary_id, or None
        when it was already closed."""

        def fn(db: Any) -> str | None:
            rows = list(db.query("select state from sits where evening = ?", [row.evening]))
            if rows and rows[0]["state"] == "closed":
                return None
            stored = self.load_night(db, night) if night and db["nights"].count_where("night = ?", [night]) else None
            topic, result = build(stored)
            db["outbox"].insert({"night": row.evening, "topic": topic, "payload": json.dumps(result),
                                 "created_at": now_iso, "summary_id": result["summary_id"]})
            db["sits"].upsert({"evening": row.evening, "state": "closed", "offered_at": row.offered_at,
                               "started_at": row.started_at, "ended_at": row.ended_at,
                               "ended_early": int(row.ended_early), "closed_at": now_iso,
                               "summary_id": result["summary_id"]}, pk="evening")
            return result["summary_id"]

        return self.call(fn, durable=True)

    # --- the outbox ---------------------------------------------------------------------------
    def outbox_waiting(self) -> list[Waiting]:
        """Every summary still waiting for its receipt, oldest first, without the payloads."""
        return self.call(lambda db: [Waiting(r["id"], r["night"], r["summary_id"]) for r in db.query(
            "select id, night, summary_id from outbox order by id")])

    def outbox_row(self, row_id: int) -> OutboxRow | None:
        """The waiting summary `row_id` with its payload, or None once it is gone."""

        def fn(db: Any) -> OutboxRow | None:
            for r in db.query("select id, topic, payload, night, summary_id from outbox where id = ?", [row_id]):
                return OutboxRow(r["id"], r["topic"], r["payload"], r["night"], r["summary_id"])
            return None

        return self.call(fn)

    def receipt(self, summary_id: str, now_iso: str) -> str | None:
        """The collector has committed `summary_id`: drop it from the outbox and mark its night
        receipted, durably. Returns the night, or None when no waiting summary has that id (a
        second receipt for a re-sent summary, or one that names something we never sent)."""

        def fn(db: Any) -> str | None:
            rows = list(db.query("select id, night from outbox where summary_id = ?", [summary_id]))
            if not rows:
                return None
            db["outbox"].delete_where("id = ?", [rows[0]["id"]])
            db.execute("update nights set receipted_at = ? where night = ? and summary_id = ?",
                       [now_iso, rows[0]["night"], summary_id])
            return rows[0]["night"]

        return self.call(fn, durable=True)

    def outbox_count(self) -> int:
        """How many summaries wait for the collector's receipt."""
        return self.call(lambda db: db["outbox"].count)

    def prune(self, before_night: str) -> list[str]:
        """Delete the receipted nights dated before `before_night` (YYYY-MM-DD), with everything
        recorded in them; returns their dates. A night without a receipt is never pruned. SQLite
        reuses the freed pages, so the file stops growing once retention is reached."""

        def fn(db: Any) -> list[str]:
            nights = [r["night"] for r in db.query(
                "select night from nights where receipted_at is not null and night < ? order by night",
                [before_night])]
            for night in nights:
                for table in ("open_postures", "movements", "postures", "gaps", "markers", "wear_epochs", "segments"):
                    db[table].delete_where("night = ?", [night])
                db["nights"].delete_where("night = ?", [night])
            db["sits"].delete_where("evening < ? and state = 'closed' and summary_id not in "
                                    "(select summary_id from outbox)", [before_night])
            return nights

        return self.call(fn)


def _by_leg(rows: Any) -> dict[int, list[WearEpoch]]:
    out: dict[int, list[WearEpoch]] = {}
    for r in rows:
        out.setdefault(r["leg"], []).append(WearEpoch(r["start_s"], r["temp_c"], r["accel_sd_g"]))
    return out


def _log_failure(fut: Future) -> None:
    if fut.exception() is not None:
        log.error("night store: a queued write failed: %s", fut.exception())
