"""Messages that are not bulletins: opt-in confirmations, "already subscribed" notes, test and review copies.

Each is built in the reader's language from the catalogs of :mod:`bulletin.i18n` and handed to
:func:`bulletin.mta.mail.build_message`, so every message bulletin sends shares one set of headers.
"""

from __future__ import annotations

import logging
from email.message import EmailMessage
from email.utils import make_msgid
from functools import lru_cache
from pathlib import Path

import jinja2

from bulletin.app.links import CONFIRM_MAX_AGE
from bulletin.app.optin import OptinEmail, optin_url
from bulletin.config import Settings
from bulletin.i18n import page_text
from bulletin.mta.mail import build_message
from bulletin.mta.smtp import send_one

log = logging.getLogger(__name__)

EMAIL_TEMPLATES = Path(__file__).resolve().parents[1] / "web" / "templates" / "email"


@lru_cache(maxsize=1)
def _email_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(EMAIL_TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def build_optin_message(settings: Settings, plan: OptinEmail) -> EmailMessage:
    """The confirmation (or "already subscribed") email, in the language the person chose."""
    text = page_text(plan.language)
    list_name = settings.organisation.list_name
    if plan.kind == "confirm":
        url = optin_url(settings, plan)
        subject = text.plain("Please confirm your subscription to %(list)s", list=list_name)
    else:
        url = optin_url(settings, plan)
        subject = text.plain("You are already subscribed to %(list)s", list=list_name)
    env = _email_environment()
    values = {
        "organisation": settings.organisation,
        "list_name": list_name,
        "name": plan.name,
        "url": url,
        "days": CONFIRM_MAX_AGE // 86400,
        "subject": subject,
        "language": plan.language,
    }
    html = env.get_template(f"{plan.kind}.html").render(values, **text.template_functions())
    plain = env.get_template(f"{plan.kind}.txt").render(values, **text.plain_functions())
    domain = settings.sender.from_address.rpartition("@")[2] or "localhost"
    return build_message(
        settings,
        to_email=plan.email,
        to_name=plan.name,
        subject=subject,
        html=html,
        text=plain,
        message_id=make_msgid(idstring="optin", domain=domain),
        list_unsubscribe_url=None,
        extra_headers={"Auto-Submitted": "auto-generated", "X-Auto-Response-Suppress": "All"},
    )


def send_optin_email(settings: Settings, plan: OptinEmail) -> bool:
    """Send the opt-in email now; a failure is logged (the page already answered) and returns False."""
    try:
        send_one(settings, build_optin_message(settings, plan))
    except Exception as exc:
        log.error("could not send the %s email for subscriber %s: %s", plan.kind, plan.subscriber_id, exc)
        return False
    return True
