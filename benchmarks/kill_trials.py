"""Nights lost over randomized kill trials: broker, collector and daemon killed with SIGKILL.

Each trial runs the real mosquitto (production config: persistence, autosave every 10 s), the real
collector (`rlsmon-server collect`) and the real daemon (`rlsmon-device run --emulate`, one-minute
nights at 60x, so about a night a second), kills a random one of them at random moments (3 times),
restarts it, then lets the device forward what is waiting and compares the nights the device
closed with the collector's database (tests/chaos.py). Even trials are the case of issue 10: only
the broker is killed, while the collector is down (before receipts, 4 of 4 nights were lost).
Odd trials kill any of the three. Bar: 0 nights lost.

    .venv/bin/python benchmarks/kill_trials.py [--trials 50] [--seed 1]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from tests.chaos import VICTIMS, make_recording, run_trial, temp_ca  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--trials", type=int, default=50)
    parser.add_argument("--seed", type=int, default=1, help="trial i uses seed + i")
    args = parser.parse_args()
    ca = temp_ca()
    closed = stored = lost = extra = waiting = 0
    with tempfile.TemporaryDirectory(prefix="rlsmon-kill-trials-") as tmp:
        work = Path(tmp)
        recording = make_recording(work)
        for i in range(args.trials):
            broker_only = i % 2 == 0
            r = run_trial(work / f"trial-{i}", ca, recording, args.seed + i,
                          victims=("broker",) if broker_only else VICTIMS, collector_down=broker_only)
            closed, stored, lost = closed + r.closed, stored + r.stored, lost + len(r.lost)
            extra, waiting = extra + r.extra, waiting + r.not_receipted
            scenario = "broker kills, collector down" if broker_only else "random kills"
            print(f"trial {i:2d} (seed {r.seed}, {scenario}): killed {', '.join(r.kills)}; "
                  f"{r.stored}/{r.closed} nights stored, lost {r.lost or 0}, {r.seconds:.1f} s", flush=True)
    print(f"\n{args.trials} trials: {closed} nights closed on the device, {stored} stored exactly once by "
          f"the collector, nights lost: {lost}, unexpected nights: {extra}, left unreceipted: {waiting}")
    return 0 if lost == extra == waiting == 0 else 1


if __name__ == "__main__":
    sys.exit(main())
