"""Every message that is not a bulletin: opt-in, welcome, test and review copies, staff notices.

Each is built here in its reader's language from the ``web`` catalogs of :mod:`bulletin.i18n`
and goes through :func:`notice_message`, so they all share one set of headers: To built by
:func:`bulletin.mta.mail.build_message` from :class:`email.headerregistry.Address` (as bulletins
do, so a display name cannot smuggle in an address), ``Auto-Submitted: auto-generated``, and a
Message-ID of the sender's domain. None of them touches the delivery ledger.
"""

from __future__ import annotations

import html as html_lib
import logging
import re
from collections.abc import Mapping
from dataclasses import dataclass
from email.message import EmailMessage
from email.utils import make_msgid
from functools import lru_cache
from pathlib import Path

import jinja2

from bulletin.app.links import CONFIRM_MAX_AGE
from bulletin.app.optin import OptinEmail, optin_url
from bulletin.compose import placeholders
from bulletin.config import Settings
from bulletin.i18n import PageText, page_text
from bulletin.mta.mail import build_message, sender_domain
from bulletin.mta.smtp import send_one

log = logging.getLogger(__name__)

EMAIL_TEMPLATES = Path(__file__).resolve().parents[1] / "web" / "templates" / "email"
# The last path segment of the sample links in test copies: the page says they are samples.
SAMPLE_TOKEN = "sample-link-of-a-preview"


@lru_cache(maxsize=1)
def _email_environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(EMAIL_TEMPLATES),
        autoescape=jinja2.select_autoescape(["html"]),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
    )


def notice_message(
    settings: Settings,
    *,
    kind: str,
    to_email: str,
    to_name: str | None,
    subject: str,
    html: str,
    text: str,
    list_unsubscribe_url: str | None = None,
    extra_headers: Mapping[str, str] | None = None,
) -> EmailMessage:
    """The one builder of messages that are not bulletins; ``kind`` names them in the Message-ID."""
    return build_message(
        settings,
        to_email=to_email,
        to_name=to_name,
        subject=subject,
        html=html,
        text=text,
        message_id=make_msgid(idstring=kind, domain=sender_domain(settings)),
        list_unsubscribe_url=list_unsubscribe_url,
        extra_headers={"Auto-Submitted": "auto-generated", **(extra_headers or {})},
    )


# ---------------------------------------------------------------------------
# Opt-in: confirmation, "already subscribed", welcome


def topic_labels(settings: Settings, interests: str, language: str) -> list[str]:
    """The labels of comma-joined interest keys in one language (the key when a label is missing)."""
    labels = []
    for key in interests.split(","):
        if not key:
            continue
        try:
            labels.append(settings.interest(key).labels.get(language, key))
        except KeyError:
            labels.append(key)
    return labels


def _optin_subject(text: PageText, plan: OptinEmail, list_name: str) -> str:
    if plan.kind == "confirm":
        return text.plain("Please confirm your subscription to %(list)s", list=list_name)
    if plan.kind == "welcome":
        return text.plain("Welcome to %(list)s", list=list_name)
    return text.plain("You are already subscribed to %(list)s", list=list_name)


def build_optin_message(settings: Settings, plan: OptinEmail) -> EmailMessage:
    """The confirmation, "already subscribed" or welcome email, in the language the person chose."""
    text = page_text(plan.language)
    list_name = settings.organisation.list_name
    url = optin_url(settings, plan)
    subject = _optin_subject(text, plan, list_name)
    env = _email_environment()
    values = {
        "organisation": settings.organisation,
        "list_name": list_name,
        "name": plan.name,
        "url": url,
        "days": CONFIRM_MAX_AGE // 86400,
        "subject": subject,
        "language": plan.language,
        "topics": ", ".join(topic_labels(settings, plan.interests, plan.language)),
    }
    html = env.get_template(f"{plan.kind}.html").render(values, **text.template_functions())
    plain = env.get_template(f"{plan.kind}.txt").render(values, **text.plain_functions())
    return notice_message(
        settings,
        kind="optin",
        to_email=plan.email,
        to_name=plan.name,
        subject=subject,
        html=html,
        text=plain,
        extra_headers={"X-Auto-Response-Suppress": "All"},
    )


def send_optin_email(settings: Settings, plan: OptinEmail) -> bool:
    """Send the opt-in email now; a failure is logged (the page already answered) and returns False."""
    try:
        send_one(settings, build_optin_message(settings, plan))
    except Exception as exc:
        log.error("could not send the %s email for subscriber %s: %s", plan.kind, plan.subscriber_id, exc)
        return False
    return True


# ---------------------------------------------------------------------------
# Test and review copies of an edition's variants


@dataclass(frozen=True)
class VariantCopy:
    """The stored rendering of one variant, placeholders unfilled, as a tester receives it."""

    edition_id: int
    key: str
    subject: str
    html: str
    text: str
    # The edition's placeholder marker: only its slots are filled.
    marker: str


def sample_values(settings: Settings, name: str | None) -> dict[str, str]:
    """Placeholder values of a test copy: the tester's name and links that only lead to a "sample" page."""
    return placeholders.sample_values(settings.web.base_url, name, SAMPLE_TOKEN)


def copy_for_tester(
    settings: Settings,
    copy: VariantCopy,
    *,
    to_email: str,
    to_name: str | None,
    language: str,
    values: Mapping[str, str],
    list_unsubscribe_url: str | None = None,
) -> EmailMessage:
    """One variant sent to one tester, its subject marked as a test in the tester's language."""
    text = page_text(language)
    return notice_message(
        settings,
        kind=f"test.{copy.edition_id}",
        to_email=to_email,
        to_name=to_name,
        subject=text.plain("[TEST] %(subject)s", subject=copy.subject),
        html=placeholders.fill(copy.html, copy.marker, values, html=True),
        text=placeholders.fill(copy.text, copy.marker, values, html=False),
        list_unsubscribe_url=list_unsubscribe_url,
        extra_headers={"X-Bulletin-Test": f"edition {copy.edition_id}, variant {copy.key}"},
    )


_BODY_TAG = re.compile(r"<body[^>]*>", re.IGNORECASE)


def review_copy_message(
    settings: Settings, copy: VariantCopy, *, to_email: str, language: str, preview_index: str
) -> EmailMessage:
    """A reviewer's copy of one variant, with a banner naming the variant and linking the previews."""
    text = page_text(language)
    staff_url = f"{settings.web.base_url.rstrip('/')}/staff/editions/{copy.edition_id}"
    note = text.plain("Test send of variant %(variant)s: not sent to subscribers.", variant=copy.key)
    every = text.plain("Every variant: %(url)s", url=preview_index)
    staff = text.plain("On the staff pages: %(url)s", url=staff_url)
    values = sample_values(settings, None)
    plain = f"{note}\n{every}\n{staff}\n\n{placeholders.fill(copy.text, copy.marker, values, html=False)}"
    index_uri = Path(preview_index).as_uri() if Path(preview_index).is_absolute() else preview_index
    banner = (
        '<div style="background:#fff3cd;color:#5c4400;padding:12px;font:14px sans-serif;">'
        f"{html_lib.escape(note)} "
        f'<a href="{html_lib.escape(index_uri, quote=True)}">{html_lib.escape(text.plain("Preview every variant"))}</a>'
        f' · <a href="{html_lib.escape(staff_url, quote=True)}">{html_lib.escape(text.plain("Staff pages"))}</a></div>'
    )
    body = placeholders.fill(copy.html, copy.marker, values, html=True)
    match = _BODY_TAG.search(body)
    at = match.end() if match else 0
    return notice_message(
        settings,
        kind=f"review.{copy.edition_id}",
        to_email=to_email,
        to_name=None,
        subject=text.plain("[Test %(variant)s] %(subject)s", variant=copy.key, subject=copy.subject),
        html=body[:at] + banner + body[at:],
        text=plain,
        extra_headers={"X-Bulletin-Variant": copy.key, "X-Bulletin-Preview": preview_index},
    )


# ---------------------------------------------------------------------------
# Notices to staff


def void_notice_message(
    settings: Settings, *, to_email: str, edition_id: int, problems: list[str], language: str
) -> EmailMessage:
    """Tell a reviewer that an approved edition went back to review, and why."""
    text = page_text(language)
    base = settings.web.base_url.rstrip("/")
    body = (
        text.plain(
            "Edition %(edition)s is back in review: its approval is void because %(reasons)s.",
            edition=edition_id,
            reasons="; ".join(problems),
        )
        + "\n\n"
        + text.plain("It will not be sent until it is approved again. Check it and approve it:")
        + "\n\n"
        f"    bulletin edition history {edition_id}\n"
        f"    bulletin edition review {edition_id}\n"
        f"    bulletin edition approve {edition_id} --by NAME\n\n"
        + text.plain("Staff pages: %(url)s", url=f"{base}/staff/editions/{edition_id}")
        + "\n"
    )
    return notice_message(
        settings,
        kind=f"void.{edition_id}",
        to_email=to_email,
        to_name=None,
        subject=text.plain(
            "[%(list)s] Edition %(edition)s needs approval again",
            list=settings.organisation.list_name,
            edition=edition_id,
        ),
        html="",
        text=body,
    )
