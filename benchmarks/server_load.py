"""Ingest rate: nights per second from 4 devices publishing at once, through a real mosquitto (TLS,
passwords, ACL) into SQLite by the real collector. Each night has about 500 LMs. The bar is ≥ 500/s.

The clock starts when the 4 publisher processes are connected and released together, and stops when
the collector has committed (and acknowledged) the last night. The publishers are separate
processes, as devices are separate machines, but they share this machine's cores with mosquitto and
the collector, and with whatever else runs on the machine: the rate printed is what was left for
us. So it also prints the CPU time per night of each part, and from it the rate this machine's
cores could carry with nothing else running, and the rate of `ingest()` alone (no MQTT).

    .venv/bin/python benchmarks/server_load.py [--nights-per-device 250] [--lms 500] [--database URL]

`--database postgresql://…` stores into that (empty) PostgreSQL database instead of a new SQLite
file; `ingest()` alone is still measured on SQLite.
"""

from __future__ import annotations

import argparse
import multiprocessing as mp
import os
import sys
import tempfile
import threading
import time
from collections import Counter
from datetime import date, timedelta
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import trustme  # noqa: E402

from server.collector import Collector, ingest  # noqa: E402
from server.config import CollectorConfig, MqttConfig  # noqa: E402
from server.db import open_db  # noqa: E402
from tests.broker import Broker  # noqa: E402
from tests.server.payloads import encode, make_summary  # noqa: E402

DEVICES = 4
FIRST_NIGHT = date(2020, 1, 1)


def night_payloads(device_id: str, nights: int, lms: int) -> list[bytes]:
    """`nights` distinct nights of one device, each with `lms` LMs."""
    return [
        encode(make_summary(device_id, (FIRST_NIGHT + timedelta(days=i)).isoformat(), n_lms=lms))
        for i in range(nights)
    ]


def publisher(host: str, port: int, ca_file: str, device_id: str, password: str, nights: int, lms: int,
              ready, go, done, cpu_s) -> None:
    """One device: connect, wait for the start, publish every night at QoS 1, wait for every PUBACK."""
    import ssl

    import paho.mqtt.client as mqtt

    payloads = night_payloads(device_id, nights, lms)
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
    """User + system CPU seconds of another process so far (Linux /proc)."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def children_cpu_s(exclude: set[int]) -> float:
    """CPU seconds so far of this process's live children, except `exclude` (the collector's
    validator processes, when the publishers are excluded)."""
    total_s = 0.0
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        if int(fields[1]) == os.getpid() and int(stat.parent.name) not in exclude:
            total_s += (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    return total_s


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
    parser.add_argument("--nights-per-device", type=int, default=250)
    parser.add_argument("--lms", type=int, default=500, help="LMs per night")
    parser.add_argument("--validators", type=int, default=CollectorConfig().validators,
                        help="collector validator processes ([collector] validators; default as shipped)")
    parser.add_argument("--database", metavar="URL",
                        help="an empty PostgreSQL database (postgresql://…) instead of a new SQLite file")
    args = parser.parse_args()
    total = DEVICES * args.nights_per_device

    with tempfile.TemporaryDirectory() as tmp:
        workdir = Path(tmp)
        target = args.database or workdir / "server.db"
        with open_db(target) as db:
            if db["nights"].count:
                raise SystemExit(f"{args.database} already holds nights: give an empty database")
        broker = Broker(workdir / "mosquitto", trustme.CA())
        broker.start()
        try:
            passwords = {f"dev-{i}": broker.add_device(f"dev-{i}") for i in range(DEVICES)}
            finished = threading.Event()
            kinds: Counter = Counter()

            def on_outcome(topic, outcome) -> None:
                kinds[outcome.kind] += 1
                if sum(kinds.values()) >= total:
                    finished.set()

            config = MqttConfig(host=broker.host, port=broker.port, ca_file=str(broker.ca_file),
                                username=broker.collector_user)
            collector = Collector(target, config, broker.collector_password,
                                  validators=args.validators, on_outcome=on_outcome)
            collector.start()
            if not collector.subscribed.wait(30):
                raise SystemExit("the collector did not subscribe")

            load_before = os.getloadavg()[0]
            ctx = mp.get_context("spawn")
            go = ctx.Event()
            procs = []
            for device_id, password in passwords.items():
                ready, done, cpu_s = ctx.Event(), ctx.Event(), ctx.Value("d", 0.0)
                p = ctx.Process(target=publisher, args=(broker.host, broker.port, str(broker.ca_file), device_id,
                                                       password, args.nights_per_device, args.lms, ready, go, done,
                                                       cpu_s))
                p.start()
                procs.append((p, ready, done, cpu_s))
            for _, ready, _, _ in procs:
                if not ready.wait(120):
                    raise SystemExit("a publisher did not get ready")
            publisher_pids = {p.pid for p, _, _, _ in procs}
            validators_cpu_start_s = children_cpu_s(publisher_pids)
            collector_cpu_start_s = time.process_time()
            broker_cpu_start_s = process_cpu_s(broker.process.pid)
            start = time.perf_counter()
            go.set()
            if not finished.wait(600):
                raise SystemExit(f"only {sum(kinds.values())} of {total} nights arrived: {dict(kinds)}")
            elapsed = time.perf_counter() - start
            collector_cpu_s = time.process_time() - collector_cpu_start_s
            validators_cpu_s = children_cpu_s(publisher_pids) - validators_cpu_start_s
            broker_cpu_s = process_cpu_s(broker.process.pid) - broker_cpu_start_s
            for p, _, done, _ in procs:
                done.wait(60)
                p.join(60)
            publishers_cpu_s = sum(cpu_s.value for _, _, _, cpu_s in procs)
            collector.stop()
            with open_db(target) as db:
                stored = db["nights"].count
            if stored != total or kinds["stored"] != total:
                raise SystemExit(f"expected {total} stored nights, got {stored} ({dict(kinds)})")
            print(f"ingest through mosquitto: {total} nights of {args.lms} LMs from {DEVICES} devices "
                  f"in {elapsed:.2f} s = {total / elapsed:.0f} nights/s with {args.validators} validator processes "
                  f"(bar: >= 500/s; {os.cpu_count()} cores, load average before {load_before:.2f})")
            per_night_s = {"collector": collector_cpu_s / total, "its validators": validators_cpu_s / total,
                           "mosquitto": broker_cpu_s / total, "publishers": publishers_cpu_s / total}
            print("CPU per night: " + ", ".join(f"{k} {1000 * v:.2f} ms" for k, v in per_night_s.items()))
            # What the cores could carry if nothing else ran: load-independent, unlike the rate.
            print(f"CPU-bound capacity of this machine: {os.cpu_count() / sum(per_night_s.values()):.0f} nights/s "
                  f"({os.cpu_count()} cores / {1000 * sum(per_night_s.values()):.2f} ms of CPU per night)")
        finally:
            broker.kill()
        print(f"ingest() alone (validate + SQLite): {ingest_only_rate(workdir, args.lms):.0f} nights/s")


if __name__ == "__main__":
    main()
