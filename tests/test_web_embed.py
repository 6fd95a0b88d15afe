"""The embeddable subscription form: `bulletin web snippet`, and posts from other sites (web.embed_origins)."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import lxml.html  # type: ignore[import-untyped]
import pytest
from click.testing import CliRunner, Result

from bulletin.cli import cli
from bulletin.config import ConfigError, settings_from_dict
from bulletin.models import SubscriberStatus

from .factories import write_config
from .smtp_server import RecordingSMTPServer
from .web_support import WebEnv, make_env, subscriber_state

PARTNER = "https://www.partner-site.example"


@pytest.fixture
def env(tmp_path: Path, smtp_server: RecordingSMTPServer) -> Iterator[WebEnv]:
    env = make_env(tmp_path, smtp_server, web={"embed_origins": [PARTNER], "confirm_emails_per_ip": 3})
    yield env
    env.engine.dispose()


def snippet(env: WebEnv, tmp_path: Path, *args: str) -> Result:
    config = write_config(
        tmp_path / "bulletin.toml",
        {"database": {"url": env.settings.database.url}, "web": {"base_url": "https://bulletin.example.org"}},
    )
    return CliRunner().invoke(cli, ["--config", str(config), "web", "snippet", *args], catch_exceptions=False)


def form_fields(html: str) -> tuple[str, dict[str, str]]:
    """The action of the snippet's form and what a visitor types into it."""
    form = lxml.html.fragment_fromstring(html, create_parent="div").find(".//form")
    assert form is not None
    return form.get("action"), {
        element.get("name"): element.get("value") or ""
        for element in form.iter("input")
        if element.get("type") != "checkbox"
    }


def post_from(env: WebEnv, data: dict[str, object], **headers: str):  # type: ignore[no-untyped-def]
    # A new client: a visitor of the other site has no cookie of ours.
    env.client.cookies.clear()
    return env.client.post("/subscribe?lang=es", data=data, headers=headers)


def test_snippet_is_a_plain_form_in_the_chosen_language(env: WebEnv, tmp_path: Path) -> None:
    result = snippet(env, tmp_path, "--lang", "es")
    assert result.exit_code == 0, result.output
    action, fields = form_fields(result.output)
    assert action == "https://bulletin.example.org/subscribe?lang=es"
    assert fields["language"] == "es" and "website" in fields and "email" in fields
    assert "<script" not in result.output and "csrf" not in result.output
    root = lxml.html.fragment_fromstring(result.output, create_parent="div")
    labels = [" ".join(label.text_content().split()) for label in root.iter("label")]
    assert "Juventud" in labels and "Correo electrónico" in labels
    assert root.find(".//form").get("method") == "post"
    default = snippet(env, tmp_path)
    assert form_fields(default.output)[1]["language"] == "fr"


def test_snippet_with_an_unknown_language_is_one_line(env: WebEnv, tmp_path: Path) -> None:
    result = snippet(env, tmp_path, "--lang", "de")
    assert result.exit_code != 0
    assert result.output.strip().splitlines() == ["Error: 'de' is not one of the configured languages (fr, en, es)"]


def test_post_from_an_allowed_site_lands_on_check_your_email(env: WebEnv, tmp_path: Path) -> None:
    _, fields = form_fields(snippet(env, tmp_path, "--lang", "es").output)
    data = {**fields, "email": "ana@example.org", "name": "Ana", "interests": ["youth"]}
    response = post_from(env, data, Origin=PARTNER, Referer=PARTNER + "/es/boletin")
    assert response.status_code == 303
    assert response.headers["location"] == "/subscribe/sent"
    landing = env.client.get("/subscribe/sent")
    assert landing.status_code == 200
    assert "Revise su bandeja de entrada" in landing.text
    assert "ana@example.org" in landing.text
    subscriber = subscriber_state(env.engine, "ana@example.org")
    assert subscriber is not None and subscriber.status == SubscriberStatus.PENDING
    assert (subscriber.language, subscriber.interests) == ("es", "youth")
    [message] = env.smtp.wait_for(1)
    assert message.parse()["To"] == "Ana <ana@example.org>"


def test_post_from_an_allowed_site_by_referer_alone(env: WebEnv, tmp_path: Path) -> None:
    _, fields = form_fields(snippet(env, tmp_path).output)
    response = post_from(env, {**fields, "email": "bea@example.org"}, Referer=PARTNER + "/page?x=1")
    assert response.status_code == 303
    assert subscriber_state(env.engine, "bea@example.org") is not None


@pytest.mark.parametrize(
    "headers",
    [
        {"Origin": "https://evil.example"},
        {"Referer": "https://evil.example/form"},
        {"Origin": "https://www.partner-site.example.evil.example"},
        {"Origin": "http://www.partner-site.example"},
    ],
)
def test_post_from_another_site_is_refused(env: WebEnv, tmp_path: Path, headers: dict[str, str]) -> None:
    _, fields = form_fields(snippet(env, tmp_path).output)
    response = post_from(env, {**fields, "email": "eve@example.org"}, **headers)
    assert response.status_code == 403
    assert "no puede enviarse desde otro sitio" in response.text
    assert subscriber_state(env.engine, "eve@example.org") is None
    assert env.smtp.messages == []


def test_post_without_origin_or_token_is_refused(env: WebEnv, tmp_path: Path) -> None:
    _, fields = form_fields(snippet(env, tmp_path).output)
    for headers in ({}, {"Origin": "null"}):
        response = post_from(env, {**fields, "email": "nobody@example.org"}, **headers)
        assert response.status_code == 403
    assert subscriber_state(env.engine, "nobody@example.org") is None


def test_cross_site_posts_keep_the_honeypot_and_the_rate_limit(env: WebEnv, tmp_path: Path) -> None:
    _, fields = form_fields(snippet(env, tmp_path).output)
    robot = post_from(env, {**fields, "email": "robot@example.org", "website": "http://spam.example"}, Origin=PARTNER)
    assert robot.status_code == 303
    assert subscriber_state(env.engine, "robot@example.org") is None
    statuses = [
        post_from(env, {**fields, "email": f"person{n}@example.org"}, Origin=PARTNER).status_code for n in range(4)
    ]
    # web.confirm_emails_per_ip is 3 in this test.
    assert statuses == [303, 303, 303, 429]


def test_embed_origins_must_be_origins(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match=r"web.embed_origins\[0\]"):
        settings_from_dict({"web": {"embed_origins": ["https://www.example.org/page"]}}, tmp_path)
    settings = settings_from_dict({"web": {"embed_origins": ["https://www.example.org"]}}, tmp_path)
    assert settings.web.embed_origins == ["https://www.example.org"]
