"""Returned mail as real MTAs and mailbox providers write it: DSNs, ARF reports, requests, vacation replies.

Each builder takes the message bulletin sent (as the test SMTP server received it) and answers
it the way Postfix, a non-standard MTA, a feedback loop, a mail client or an out-of-office
rule would, with the email package.
"""

from __future__ import annotations

from datetime import UTC, datetime
from email.message import EmailMessage, Message
from email.mime.base import MIMEBase
from email.mime.message import MIMEMessage
from email.mime.multipart import MIMEMultipart
from email.mime.text import MIMEText
from email.parser import BytesParser
from email.policy import SMTP, compat32
from email.utils import format_datetime, make_msgid, parseaddr

from .smtp_server import ReceivedMessage

REPORTING_MTA = "mx.example.net"


def _original(sent: ReceivedMessage) -> Message:
    return BytesParser(policy=compat32).parsebytes(sent.data)


def _headers_only(sent: ReceivedMessage) -> bytes:
    return sent.data.split(b"\r\n\r\n", 1)[0] + b"\r\n"


def _envelope(message: Message, sent: ReceivedMessage, subject: str, sender: str) -> None:
    message["From"] = sender
    # A bounce goes to the envelope sender: bulletin's VERP address; the MTA records it on delivery.
    message["To"] = sent.mail_from
    message["Delivered-To"] = sent.mail_from
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain=REPORTING_MTA)


def dsn(sent: ReceivedMessage, *, status: str, diagnostic: str, action: str | None = None) -> bytes:
    """An RFC 3464 delivery status notification, as Postfix writes one, quoting the original headers."""
    recipient = sent.recipients[0]
    action = action or ("failed" if status.startswith("5") else "delayed")
    report = MIMEMultipart("report", report_type="delivery-status")
    _envelope(report, sent, "Undelivered Mail Returned to Sender", f"MAILER-DAEMON@{REPORTING_MTA}")
    report["Auto-Submitted"] = "auto-replied"
    human = (
        f"This is the mail system at host {REPORTING_MTA}.\n\n"
        f"I'm sorry to have to inform you that your message could not\nbe delivered to one or more recipients.\n\n"
        f"<{recipient}>: host {REPORTING_MTA} said: {diagnostic}\n"
    )
    report.attach(MIMEText(human, "plain", "utf-8"))
    status_part = MIMEBase("message", "delivery-status")
    per_message = Message()
    per_message["Reporting-MTA"] = f"dns; {REPORTING_MTA}"
    per_message["Arrival-Date"] = format_datetime(datetime.now(UTC))
    per_recipient = Message()
    per_recipient["Final-Recipient"] = f"rfc822; {recipient}"
    per_recipient["Original-Recipient"] = f"rfc822;{recipient}"
    per_recipient["Action"] = action
    per_recipient["Status"] = status
    per_recipient["Remote-MTA"] = f"dns; {REPORTING_MTA}"
    per_recipient["Diagnostic-Code"] = f"smtp; {diagnostic}"
    status_part.set_payload([per_message, per_recipient])
    report.attach(status_part)
    headers = MIMEBase("text", "rfc822-headers")
    headers.set_payload(_headers_only(sent).decode("ascii"))
    report.attach(headers)
    return report.as_bytes(policy=compat32.clone(linesep="\r\n"))


def exim_bounce(sent: ReceivedMessage, *, diagnostic: str = "550 5.1.1 No such user here") -> bytes:
    """A non-standard bounce, as Exim writes one: plain text, the original quoted below."""
    recipient = sent.recipients[0]
    body = (
        "This message was created automatically by mail delivery software.\n\n"
        "A message that you sent could not be delivered to one or more of its\n"
        "recipients. This is a permanent error. The following address(es) failed:\n\n"
        f"  {recipient}\n"
        f"    SMTP error from remote mail server after RCPT TO:<{recipient}>:\n"
        f"    host {REPORTING_MTA} [192.0.2.7]: {diagnostic}\n\n"
        "------ This is a copy of the message, including all the headers. ------\n\n"
    ) + _headers_only(sent).decode("ascii").replace("\r\n", "\n")
    message = MIMEText(body, "plain", "us-ascii")
    _envelope(
        message,
        sent,
        "Mail delivery failed: returning message to sender",
        f"Mail Delivery System <Mailer-Daemon@{REPORTING_MTA}>",
    )
    message["X-Failed-Recipients"] = recipient
    message["Auto-Submitted"] = "auto-replied"
    return message.as_bytes(policy=compat32.clone(linesep="\r\n"))


def arf_complaint(sent: ReceivedMessage) -> bytes:
    """An RFC 5965 abuse report from a feedback loop, with the original message attached.

    Like real feedback loops it is sent to the FBL address, not the VERP one: the delivery is
    found from the attached message.
    """
    report = MIMEMultipart("report", report_type="feedback-report")
    report["From"] = f"Feedback Loop <fbl@{REPORTING_MTA}>"
    report["To"] = "abuse@centre.example.org"
    report["Subject"] = "Abuse report"
    report["Date"] = format_datetime(datetime.now(UTC))
    report["Message-ID"] = make_msgid(domain=REPORTING_MTA)
    report.attach(MIMEText("This is an email abuse report for an email message received.\n", "plain", "utf-8"))
    feedback = MIMEBase("message", "feedback-report")
    feedback.set_payload(
        "Feedback-Type: abuse\r\nUser-Agent: ExampleFBL/1.0\r\nVersion: 1\r\n"
        f"Original-Mail-From: <{sent.mail_from}>\r\nOriginal-Rcpt-To: <{sent.recipients[0]}>\r\n"
        f"Reported-Domain: centre.example.org\r\n"
    )
    report.attach(feedback)
    original = BytesParser(policy=compat32).parsebytes(
        b"Return-Path: <" + sent.mail_from.encode() + b">\r\n" + sent.data
    )
    report.attach(MIMEMessage(original))
    return report.as_bytes(policy=compat32.clone(linesep="\r\n"))


def mailto_unsubscribe(sent: ReceivedMessage, *, subject: str = "unsubscribe") -> bytes:
    """What a mail client's "unsubscribe" button sends: a message to the List-Unsubscribe mailto."""
    header = str(_original(sent)["List-Unsubscribe"])
    mailto = header.split("<mailto:", 1)[1].split(">", 1)[0]
    address = mailto.split("?", 1)[0]
    message = EmailMessage(policy=SMTP)
    message["From"] = sent.recipients[0]
    message["To"] = address
    message["Subject"] = subject
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="example.net")
    message.set_content("This message was automatically generated by Gmail.\n")
    return message.as_bytes()


VACATION = {
    "fr": (
        "Absence du bureau : Re: {subject}",
        "Bonjour, je suis en congé jusqu'au 12 janvier et lirai votre message à mon retour.",
    ),
    "en": ("Out of Office: {subject}", "I am out of the office until January 12 with limited access to email."),
    "es": (
        "Respuesta automática: {subject}",
        "Estoy fuera de la oficina hasta el 12 de enero. Responderé a mi regreso.",
    ),
}


def vacation_reply(sent: ReceivedMessage, language: str, *, rfc3834: bool = True) -> bytes:
    """An out-of-office reply in ``language``, with or without the RFC 3834 Auto-Submitted header."""
    subject_template, body = VACATION[language]
    original = _original(sent)
    message = EmailMessage(policy=SMTP)
    message["From"] = sent.recipients[0]
    message["To"] = sent.mail_from
    message["Delivered-To"] = sent.mail_from
    message["Subject"] = subject_template.format(subject=str(original["Subject"])[:40].replace("\n", " "))
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="example.net")
    message["In-Reply-To"] = str(original["Message-ID"])
    if rfc3834:
        message["Auto-Submitted"] = "auto-replied"
    message.set_content(body + "\n")
    return message.as_bytes()


def newsletter_reply(sent: ReceivedMessage) -> bytes:
    """A person's ordinary reply: none of the above, to be left alone."""
    message = EmailMessage(policy=SMTP)
    message["From"] = sent.recipients[0]
    message["To"] = parseaddr(str(_original(sent)["From"]))[1]
    message["Subject"] = "Re: the bulletin"
    message["Date"] = format_datetime(datetime.now(UTC))
    message["Message-ID"] = make_msgid(domain="example.net")
    message.set_content("Thank you, the article on youth programmes was useful.\n")
    return message.as_bytes()
