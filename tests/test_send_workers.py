"""Several ``bulletin worker`` processes on PostgreSQL share an edition and send each message once."""

from __future__ import annotations

import re
from collections import Counter
from pathlib import Path

import pytest
from sqlalchemy import select

from bulletin.db import reading, transaction
from bulletin.models import Delivery, DeliveryState, Edition, EditionStatus, utcnow

from .factories import write_config
from .send_fixtures import assert_each_received_once, fast_settings, freeze, run_workers, sending_world
from .smtp_server import RecordingSMTPServer

SUBSCRIBERS = 600


@pytest.mark.postgres
@pytest.mark.slow
def test_three_workers_send_each_message_exactly_once(
    tmp_path: Path, smtp_server: RecordingSMTPServer, postgres_url: str
) -> None:

    # 250 a second per worker, so one worker alone would need more than two seconds.
    data = fast_settings(
        tmp_path,
        smtp_server,
        database_url=postgres_url,
        smtp={"messages_per_second": 250.0},
        delivery={"batch_size": 25},
    )
    config = write_config(tmp_path / "bulletin.toml", data)
    settings, engine, edition_id, emails = sending_world(tmp_path, smtp_server, SUBSCRIBERS, database_url=postgres_url)
    freeze(engine, settings, edition_id)
    with transaction(engine) as session:
        # A worker that died mid-send on another machine left five rows claimed, three of them handed over.
        ghost_rows = session.scalars(
            select(Delivery).where(Delivery.edition_id == edition_id).order_by(Delivery.id).limit(5)
        ).all()
        for number, row in enumerate(ghost_rows):
            row.state = DeliveryState.SENDING
            row.claimed_by = "otherhost:4242:worker"
            row.handed_at = utcnow() if number < 3 else None
        ghost_ids = {row.id for row in ghost_rows[:3]}

    outputs = run_workers(config, 3)
    assert_each_received_once(smtp_server, emails)
    per_worker = [int(re.search(r"^worker \S+: (\d+) sent", out, re.M).group(1)) for out, _ in outputs]  # type: ignore[union-attr]
    assert sum(per_worker) == SUBSCRIBERS
    assert sum(1 for count in per_worker if count > 0) >= 2, per_worker
    with reading(engine) as session:
        states = Counter(session.scalars(select(Delivery.state).where(Delivery.edition_id == edition_id)))
        uncertain = set(
            session.scalars(select(Delivery.id).where(Delivery.edition_id == edition_id, Delivery.uncertain == 1))
        )
        edition = session.get(Edition, edition_id)
        assert edition is not None
        assert edition.status is EditionStatus.SENT
    assert states == {DeliveryState.SENT: SUBSCRIBERS}
    # The dead worker's rows were recovered and sent; only those it had handed over count as uncertain.
    assert uncertain == ghost_ids
    engine.dispose()
