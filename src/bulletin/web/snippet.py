"""The subscription form other sites embed: plain HTML posting to this site's /subscribe."""

from __future__ import annotations

from bulletin.config import Settings
from bulletin.errors import InvalidInput
from bulletin.i18n import page_text
from bulletin.web.pages import make_environment
from bulletin.web.views.subscribe import HONEYPOT_FIELD


def subscribe_snippet(settings: Settings, language: str) -> str:
    """The HTML of the form in ``language``, with no script and no style sheet of its own."""
    if language not in settings.languages:
        raise InvalidInput(f"{language!r} is not one of the configured languages ({', '.join(settings.languages)})")
    text = page_text(language)
    interests = [
        {"key": interest.key, "label": interest.labels.get(language) or interest.key} for interest in settings.interests
    ]
    env = make_environment(settings.schedule.timezone)
    return env.get_template("embed_form.html").render(
        organisation=settings.organisation,
        action=f"{settings.web.base_url.rstrip('/')}/subscribe?lang={language}",
        interests=interests,
        honeypot=HONEYPOT_FIELD,
        **text.template_functions(),
    )
