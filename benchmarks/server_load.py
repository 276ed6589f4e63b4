"""Ingest rate: nights per second from 4 devices publishing at once, through a real mosquitto (TLS,
passwords, ACL) into SQLite by K real collectors (`--collectors`, in a share group when K > 1,
each in its own process as deployed). Each night has about 500 LMs. The bars: ≥ 500/s, and
≥ 50 % of what mosquitto + paho alone carry (issue 14).

In the same run and on the same broker, first `broker_only`: the same 4 publishers send nights
made by the same function (the same sizes and shape) over the same TLS to K bare paho subscribers
(QoS 1, the collector's Receive Maximum, in a share group when K > 1, each in its own process) that
only count them. Then the collectors: the same again, and the clock stops when they have committed
(and acknowledged) the last night. `ratio` is collectors / broker_only. The two alternate for
`--rounds` rounds (each round's collectors store new nights), and the medians are reported.

`--prechecked` adds a third phase to each round: the same collectors, except that `check()` (the
JSON parse, the contract and the consistency rules) was run on every payload before the clock
started and is a dictionary lookup during it. It is not a way to run: it measures the ceiling
that any faster validation could reach, with the receiving, storing, committing and receipts as
they are (`prechecked_ratio`).

The clock starts when the 4 publisher processes are connected and released together. The
publishers are separate processes, as devices are separate machines, but they share this machine's
cores with mosquitto and the consumers, and with whatever else runs on the machine: the rate
printed is what was left for us. So it also prints the CPU time per night of each part, and the
rate of `ingest()` alone (no MQTT).

    .venv/bin/python benchmarks/server_load.py [--collectors 1] [--rounds 3] [--nights-per-device 250]
        [--database URL] [--prechecked] [--json]

`--database postgresql://…` stores into that (empty) PostgreSQL database instead of a new SQLite
file; `ingest()` alone is still measured on SQLite.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing as mp
import os
import statistics
import sys
import tempfile
import threading
import time
from datetime import date, timedelta
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trustme  # noqa: E402

from server.collector import RECEIVE_MAXIMUM, Collector, ingest, subscription_filters  # noqa: E402
from server.config import CollectorConfig, MqttConfig  # noqa: E402
from server.db import open_db  # noqa: E402
from tests.broker import Broker  # noqa: E402
from tests.server.payloads import encode, make_summary  # noqa: E402

DEVICES = 4
FIRST_NIGHT = date(2020, 1, 1)
SHARE_GROUP = "bench"


def night_payloads(device_id: str, nights: int, lms: int, first: int = 0) -> list[bytes]:
    """`nights` distinct nights of one device from night number `first`, each with `lms` LMs."""
    return [
        encode(make_summary(device_id, (FIRST_NIGHT + timedelta(days=i)).isoformat(), n_lms=lms))
        for i in range(first, first + nights)
    ]


def publisher(host: str, port: int, ca_file: str, device_id: str, password: str, payloads: list[bytes],
              ready, go, done, cpu_s) -> None:
    """One device: connect, wait for the start, publish every night at QoS 1, wait for every PUBACK."""
    import ssl

    import paho.mqtt.client as mqtt

    acked = threading.Semaphore(0)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"bench-{device_id}", protocol=mqtt.MQTTv5)
    client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    client.username_pw_set(device_id, password)
    client.max_inflight_messages_set(100)
    client.max_queued_messages_set(0)
    client.on_publish = lambda c, u, mid, rc, p: acked.release()
    connected = threading.Event()
    client.on_connect = lambda c, u, f, rc, p: connected.set()
    client.connect(host, port)
    client.loop_start()
    connected.wait(30)
    ready.set()
    go.wait()
    cpu_start_s = time.process_time()
    for payload in payloads:
        client.publish(f"rlsmon/v1/{device_id}/summary", payload, qos=1)
    for _ in payloads:
        acked.acquire()
    cpu_s.value = time.process_time() - cpu_start_s
    client.disconnect()
    client.loop_stop()
    done.set()


def process_cpu_s(pid: int) -> float:
    """User + system CPU seconds so far of a process and of its live descendants (Linux /proc):
    a collector's, with its validator processes."""
    stats: dict[int, tuple[int, float]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        stats[int(stat.parent.name)] = (int(fields[1]), (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK"))
    tree = {pid}
    for _ in range(3):  # the collector, its validators (and their forkserver, if any)
        tree |= {p for p, (parent, _) in stats.items() if parent in tree}
    return sum(cpu_s for p, (_, cpu_s) in stats.items() if p in tree)


def _counter(count, total: int, finished) -> None:
    with count.get_lock():
        count.value += 1
        if count.value >= total:
            finished.set()


def consumer(kind: str, host: str, port: int, ca_file: str, user: str, password: str, share_group: str,
             validators: int, db_path: str, total: int, count, finished, ready, stop,
             payloads: dict[str, list[bytes]] | None = None) -> None:
    """One consumer process: a bare paho subscriber that counts messages (`broker_only`), or a
    collector that counts the nights it committed (`collector`; `prechecked`: with the verdicts of
    `check()` on `payloads` computed before it subscribes)."""
    import ssl

    if kind == "prechecked":
        import server.collector

        verdicts = {p: server.collector.check(f"rlsmon/v1/{device_id}/summary", p)
                    for device_id, nights in (payloads or {}).items() for p in nights}
        server.collector.check = lambda topic, payload, retained=False, now=None: verdicts[payload]
    if kind in ("collector", "prechecked"):
        # No session left behind once stopped, so that the next round's broker_only phase is not
        # also queued for it (deployed collectors keep theirs for days).
        config = MqttConfig(host=host, port=port, ca_file=ca_file, username=user, share_group=share_group,
                            session_expiry_s=0)
        collector = Collector(db_path, config, password, validators=validators,
                              on_outcome=lambda topic, outcome: _counter(count, total, finished))
        collector.start()
        if collector.subscribed.wait(60):
            ready.set()
        stop.wait()
        collector.stop()
        return

    import paho.mqtt.client as mqtt
    from paho.mqtt.packettypes import PacketTypes
    from paho.mqtt.properties import Properties

    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=user, protocol=mqtt.MQTTv5)
    client.tls_set_context(ssl.create_default_context(cafile=ca_file))
    client.username_pw_set(user, password)
    summary_filter, _ = subscription_filters(share_group)
    client.on_connect = lambda c, u, f, rc, p: c.subscribe(summary_filter, qos=1)
    client.on_subscribe = lambda c, u, mid, rcs, p: ready.set()
    client.on_message = lambda c, u, m: _counter(count, total, finished)
    properties = Properties(PacketTypes.CONNECT)
    properties.ReceiveMaximum = RECEIVE_MAXIMUM  # as the collector asks
    client.connect(host, port, clean_start=True, properties=properties)  # no session left behind
    client.loop_start()
    stop.wait()
    client.disconnect()
    client.loop_stop()


def phase(kind: str, broker: Broker, users: dict[str, str], passwords: dict[str, str], args: argparse.Namespace,
          db_path: Path | str, first: int) -> dict[str, Any]:
    """Run the 4 publishers (nights from number `first`) against K consumers of `kind`; nights/s and
    CPU ms per night of each part."""
    total = DEVICES * args.nights_per_device
    payloads = {device_id: night_payloads(device_id, args.nights_per_device, args.lms, first) for device_id in passwords}
    ctx = mp.get_context("spawn")
    count, finished, stop = ctx.Value("l", 0), ctx.Event(), ctx.Event()
    share_group = SHARE_GROUP if len(users) > 1 else ""
    consumers = []
    for user, password in users.items():
        ready = ctx.Event()
        p = ctx.Process(target=consumer, args=(kind, broker.host, broker.port, str(broker.ca_file), user, password,
                                               share_group, args.validators, str(db_path), total, count, finished,
                                               ready, stop, payloads if kind == "prechecked" else None))
        p.start()
        consumers.append((p, ready))
    for _, ready in consumers:
        if not ready.wait(120):
            raise SystemExit(f"a {kind} consumer did not subscribe")
    go = ctx.Event()
    publishers = []
    for device_id, password in passwords.items():
        ready, done, cpu_s = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
        p = ctx.Process(target=publisher, args=(broker.host, broker.port, str(broker.ca_file), device_id,
                                               password, payloads[device_id], ready, go, done, cpu_s))
        p.start()
        publishers.append((p, ready, done, cpu_s))
    for _, ready, _, _ in publishers:
        if not ready.wait(120):
            raise SystemExit("a publisher did not get ready")
    consumers_cpu_start_s = sum(process_cpu_s(p.pid) for p, _ in consumers)
    broker_cpu_start_s = process_cpu_s(broker.process.pid)
    start = time.perf_counter()
    go.set()
    if not finished.wait(600):
        raise SystemExit(f"{kind}: only {count.value} of {total} nights arrived")
    elapsed = time.perf_counter() - start
    consumers_cpu_s = sum(process_cpu_s(p.pid) for p, _ in consumers) - consumers_cpu_start_s
    broker_cpu_s = process_cpu_s(broker.process.pid) - broker_cpu_start_s
    for p, _, done, _ in publishers:
        done.wait(60)
        p.join(60)
    publishers_cpu_s = sum(cpu_s.value for _, _, _, cpu_s in publishers)
    stop.set()
    for p, _ in consumers:
        p.join(120)
    return {"nights_per_s": round(total / elapsed, 1), "elapsed_s": round(elapsed, 2),
            "cpu_ms_per_night": {"consumers": round(1000 * consumers_cpu_s / total, 3),
                                 "mosquitto": round(1000 * broker_cpu_s / total, 3),
                                 "publishers": round(1000 * publishers_cpu_s / total, 3)}}


def ingest_only_rate(workdir: Path, lms: int, nights: int = 300) -> float:
    """Nights/s of `ingest()` alone, in batches as the collector commits them."""
    db = open_db(workdir / "ingest-only.db")
    payloads = night_payloads("dev-0", nights, lms)
    start = time.perf_counter()
    for i in range(0, nights, 20):
        with db.atomic():
            for payload in payloads[i:i + 20]:
                ingest(db, "rlsmon/v1/dev-0/summary", payload)
    return nights / (time.perf_counter() - start)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--collectors", type=int, default=1, help="collector processes (a share group when > 1)")
    parser.add_argument("--rounds", type=int, default=3, help="broker_only then collector, this many times")
    parser.add_argument("--nights-per-device", type=int, default=250)
    parser.add_argument("--lms", type=int, default=500, help="LMs per night")
    parser.add_argument("--validators", type=int, default=CollectorConfig().validators,
                        help="validator processes per collector ([collector] validators; default as shipped)")
    parser.add_argument("--database", metavar="URL",
                        help="an empty PostgreSQL database (postgresql://…) instead of a new SQLite file")
    parser.add_argument("--prechecked", action="store_true",
                        help="also run the collectors with check() done before the clock: the ceiling of faster validation")
    parser.add_argument("--json", action="store_true", help="print the figures as one JSON object")
    args = parser.parse_args()
    total = DEVICES * args.nights_per_device

    rounds = []
    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        broker = Broker(workdir / "mosquitto", trustme.CA())
        broker.start()
        try:
            passwords = {f"dev-{i}": broker.add_device(f"dev-{i}") for i in range(DEVICES)}
            users = {broker.collector_user: broker.collector_password}
            users.update({f"collector-{k}": broker.add_collector(f"collector-{k}") for k in range(2, args.collectors + 1)})
            load_before = os.getloadavg()[0]
            target = args.database or str(workdir / "server.db")
            with open_db(target) as db:  # migrated once, before the collectors race to it
                if db["nights"].count:
                    raise SystemExit(f"{args.database} already holds nights: give an empty database")
            for r in range(args.rounds):
                # Interleaved, so that other load on the machine weighs on both alike.
                broker_only = phase("broker_only", broker, users, passwords, args, workdir / "unused.db", 0)
                collector = phase("collector", broker, users, passwords, args, target,
                                  r * args.nights_per_device)
                rounds.append({"broker_only": broker_only, "collector": collector,
                               "ratio": round(collector["nights_per_s"] / broker_only["nights_per_s"], 3)})
                if args.prechecked:
                    prechecked = phase("prechecked", broker, users, passwords, args, target,
                                       (args.rounds + r) * args.nights_per_device)
                    rounds[-1].update(prechecked=prechecked, prechecked_ratio=round(
                        prechecked["nights_per_s"] / broker_only["nights_per_s"], 3))
        finally:
            broker.kill()
        with open_db(target) as db:
            stored, rejected = db["nights"].count, db["rejected"].count
        expected = args.rounds * total * (2 if args.prechecked else 1)
        if stored != expected or rejected:
            raise SystemExit(f"expected {expected} stored nights and none rejected, got {stored}")
        ingest_only = ingest_only_rate(workdir, args.lms)
    phases = ("broker_only", "collector", "prechecked") if args.prechecked else ("broker_only", "collector")
    medians = {key: statistics.median(r[key]["nights_per_s"] for r in rounds) for key in phases}
    ratio = statistics.median(r["ratio"] for r in rounds)
    figures = {"database": "postgresql" if args.database else "sqlite",
               "collectors": args.collectors, "validators": args.validators, "nights_per_round": total,
               "lms": args.lms, "devices": DEVICES, "cores": os.cpu_count(),
               "load_average_before": round(load_before, 2), "rounds": rounds,
               "median_nights_per_s": medians, "median_ratio": ratio,
               "ingest_only_nights_per_s": round(ingest_only, 1),
               **({"median_prechecked_ratio": statistics.median(r["prechecked_ratio"] for r in rounds)}
                  if args.prechecked else {}),
               "ok": medians["collector"] >= 500 and ratio >= 0.5}
    if args.json:
        print(json.dumps(figures, indent=1))
        return
    print(f"{total} nights of {args.lms} LMs from {DEVICES} devices through TLS mosquitto, {args.rounds} rounds "
          f"({os.cpu_count()} cores, load average before {load_before:.2f})")
    for i, r in enumerate(rounds, 1):
        for name, f in (("broker_only (paho subscribers)", r["broker_only"]),
                        (f"{args.collectors} collector(s), {args.validators} validators each", r["collector"]),
                        ("the same, prechecked (ceiling)", r.get("prechecked"))):
            if f is not None:
                cpu = ", ".join(f"{k} {v:.2f} ms" for k, v in f["cpu_ms_per_night"].items())
                print(f"round {i}: {name:<44} {f['nights_per_s']:7.0f} nights/s   CPU per night: {cpu}")
        print(f"round {i}: ratio {r['ratio']:.2f}"
              + (f", prechecked {r['prechecked_ratio']:.2f}" if "prechecked_ratio" in r else ""))
    print(f"median ratio {ratio:.2f} (bar >= 0.5), median collector rate {medians['collector']:.0f}/s "
          f"(bar >= 500/s): {'ok' if figures['ok'] else 'OVER'}")
    print(f"ingest() alone (validate + SQLite): {ingest_only:.0f} nights/s")


if __name__ == "__main__":
    main()
