"""The opt-in and staff functions behind the pages, on SQLite and PostgreSQL."""

from __future__ import annotations

import pytest
from sqlalchemy import Engine

from bulletin.app.links import make_token
from bulletin.app.optin import RateLimited, confirm_by_token, request_subscription, resubscribe, unsubscribe
from bulletin.app.staff import add_staff, authenticate, login_delay
from bulletin.app.subscribers import find_subscriber
from bulletin.config import Settings
from bulletin.db import transaction
from bulletin.models import StaffRole, SubscriberStatus


def test_request_confirm_leave_and_return(any_settings: Settings, any_engine: Engine) -> None:
    with transaction(any_engine) as session:
        plan = request_subscription(
            session, any_settings, email="Zoe@Example.org", language="en", interests=["youth"], ip="192.0.2.7"
        )
    assert plan is not None and plan.kind == "confirm" and plan.language == "en"
    token = make_token(any_settings.secret_key, "confirm", plan.subscriber_id, plan.email, plan.link_nonce)
    with transaction(any_engine) as session:
        subscriber, changed = confirm_by_token(session, any_settings, token, ip="192.0.2.8", user_agent="UA")
        assert changed and subscriber.status == SubscriberStatus.ACTIVE and subscriber.consent_ip == "192.0.2.8"
    with transaction(any_engine) as session:
        again = request_subscription(session, any_settings, email="zoe@example.org", language="fr", ip="192.0.2.7")
        assert again is not None and again.kind == "already_subscribed"
        subscriber = find_subscriber(session, "zoe@example.org")
        assert subscriber is not None and subscriber.language == "en"
        assert unsubscribe(session, subscriber, via="test")
        assert not unsubscribe(session, subscriber, via="test")
        assert resubscribe(session, subscriber, ip=None, user_agent=None)
        assert subscriber.status == SubscriberStatus.ACTIVE


def test_rate_limits_hold_on_both_databases(any_settings: Settings, any_engine: Engine) -> None:
    plans = []
    for _ in range(any_settings.web.confirm_emails_per_address + 1):
        with transaction(any_engine) as session:
            plans.append(request_subscription(session, any_settings, email="r@example.org", language="fr", ip="ip-1"))
    assert [p is not None for p in plans] == [True, True, True, False]
    for index in range(any_settings.web.confirm_emails_per_ip - len(plans)):
        with transaction(any_engine) as session:
            request_subscription(session, any_settings, email=f"p{index}@example.org", language="fr", ip="ip-1")
    with pytest.raises(RateLimited), transaction(any_engine) as session:
        request_subscription(session, any_settings, email="last@example.org", language="fr", ip="ip-1")


def test_login_throttle_on_both_databases(any_settings: Settings, any_engine: Engine) -> None:
    with transaction(any_engine) as session:
        add_staff(session, "noor", role=StaffRole.EDITOR, password="a long secret phrase")
    for _ in range(any_settings.web.login_attempts):
        with transaction(any_engine) as session:
            assert authenticate(session, any_settings, "noor", "nope", ip="10.1.1.1").member is None
    with transaction(any_engine) as session:
        # The address that failed is refused, even with the right password...
        assert authenticate(session, any_settings, "noor", "a long secret phrase", ip="10.1.1.1").throttled
        # ...the account only slows down, and its owner elsewhere still gets in.
        assert login_delay(session, any_settings, "noor") > 0
        assert authenticate(session, any_settings, "noor", "a long secret phrase", ip="10.1.1.2").member is not None
