"""Fixtures shared by the whole suite. Fakes exist only at the hardware boundary; the broker is real."""

from __future__ import annotations

import pytest
import trustme

from tests.broker import Broker


@pytest.fixture(scope="session")
def mqtt_ca() -> trustme.CA:
    """One test CA for the session: generating keys is the slow part of a TLS broker."""
    return trustme.CA()


@pytest.fixture
def mqtt_broker(tmp_path, mqtt_ca):
    """A fresh, real mosquitto per test: TLS, passwords and the production ACL, on a free port."""
    broker = Broker(tmp_path / "mosquitto", mqtt_ca)
    broker.start()
    yield broker
    broker.kill()
