"""The night quality of a page of the patients list is read in one query, whatever the page's size
(on PostgreSQL a query per row was a round trip per row), and agrees night by night with the
quality of each patient's nights, read apart."""

from __future__ import annotations

from datetime import timedelta

from server.db import open_db
from server.web import night_quality
from tests.pgserver import BOTH_DATABASES
from tests.web import seed
from tests.web.test_pg_plans import Recording

pytestmark = BOTH_DATABASES


def test_a_pages_night_quality_is_one_query_and_agrees_with_each_patients(seeded):
    with open_db(seeded.path) as db:
        # A night of 30 min in bed among the eligible ones.
        short = seed.make_night("dev-b", seeded.last_night + timedelta(days=1), 0.0,
                                sporadic_per_h=0.0, gap=False)
        short.update(in_bed=[{"start_s": 600.0, "end_s": 2400.0}], time_in_bed_s=1800.0,
                     lm_index=0.0, plm_index=0.0, severity="insufficient_data",
                     clinically_significant=False, min_time_in_bed_s=2880.0)
        seed.store(db, short)
        expected = {}
        for (patient_id,) in db.execute("SELECT DISTINCT patient_id FROM devices "
                                        "WHERE patient_id IS NOT NULL").fetchall():
            expected.update(night_quality.of_patient(db, patient_id))
        keys = sorted(expected)
        assert len(keys) > 30 and len({q.label for q in expected.values()}) > 1
        for asked in (keys[:1], keys):
            recording = Recording(db)
            # A night that is not stored is left out; a night asked twice is answered once.
            found = night_quality.of_nights(recording, [*asked, ("dev-a", "1999-01-01"), asked[0]])
            assert len(recording.seen) == 1
            assert found == {key: expected[key] for key in asked}
        assert night_quality.of_nights(db, []) == {}
