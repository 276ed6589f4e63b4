"""Issue 10's test: the broker is killed with SIGKILL at random moments while the collector is down,
then everything restarts: every night arrives exactly once (real mosquitto with persistence, real
daemon and uplink, real collector; tests/chaos.py). benchmarks/kill_trials.py runs 50 such trials,
half of them killing the collector and the daemon too."""

from __future__ import annotations

import random

import pytest

from tests.chaos import VICTIMS, make_recording, run_trial

pytestmark = [pytest.mark.slow, pytest.mark.timeout(300)]


@pytest.fixture(scope="module")
def recording(tmp_path_factory):
    return make_recording(tmp_path_factory.mktemp("chaos-rec"))


def test_broker_killed_while_the_collector_is_down_loses_no_night(tmp_path, mqtt_ca, recording):
    seed = random.randrange(10**6)
    r = run_trial(tmp_path, mqtt_ca, recording, seed, victims=("broker",), collector_down=True)
    assert r.closed >= 1 and r.kills == ["broker"] * 3
    assert (r.lost, r.extra, r.not_receipted) == ([], 0, 0), f"seed {seed}: {r}"
    assert r.stored == r.closed


def test_any_of_the_three_killed_at_random_loses_no_night(tmp_path, mqtt_ca, recording):
    seed = random.randrange(10**6)
    r = run_trial(tmp_path, mqtt_ca, recording, seed, victims=VICTIMS)
    assert (r.lost, r.extra, r.not_receipted) == ([], 0, 0), f"seed {seed}: {r}"
    assert r.stored == r.closed >= 1
