"""``bulletin serve``: the subscription and staff pages on uvicorn."""

from __future__ import annotations

import contextlib
import socket
from collections.abc import Iterator

import click

from bulletin.cli import App, pass_app
from bulletin.errors import BulletinError


@click.command()
@click.option("--host", default="127.0.0.1", show_default=True, help="Address to listen on.")
@click.option("--port", default=8000, show_default=True, type=click.IntRange(1, 65535), help="Port to listen on.")
@click.option(
    "--with-scheduler",
    is_flag=True,
    help="Also run the scheduler (periodic editions, scheduled sends) in this process.",
)
@click.option(
    "--forwarded-allow-ips",
    default=None,
    metavar="ADDRESSES",
    help="Comma-separated addresses of the reverse proxies whose X-Forwarded-For gives the client address "
    "(rate limits, consent records). Without it the header is ignored, so nobody can pick their own address.",
)
@pass_app
def serve(app: App, host: str, port: int, with_scheduler: bool, forwarded_allow_ips: str | None) -> None:
    """Serve the subscription pages and the staff pages.

    Put it behind an HTTPS reverse proxy and set web.base_url to the public https address;
    cookies are marked Secure whenever base_url starts with https://.

    Example:

        bulletin serve --host 0.0.0.0 --port 8000 --with-scheduler
        bulletin serve --forwarded-allow-ips 127.0.0.1   # behind a proxy on this machine
    """
    import uvicorn

    from bulletin.web import create_app
    from bulletin.web.logs import log_config

    settings = app.settings
    settings.secret_key  # noqa: B018 - fail with one clear line before listening when the key is missing
    engine = app.engine
    web_app = create_app(settings, engine)
    with contextlib.ExitStack() as stack:
        if with_scheduler:
            from bulletin.runners.scheduler import running_scheduler

            stack.enter_context(running_scheduler(engine, settings))
            click.echo("Scheduler running in this process.")
        config = uvicorn.Config(
            web_app,
            host=host,
            port=port,
            # X-Forwarded-For is only read from the proxies named; anyone else could set it.
            proxy_headers=bool(forwarded_allow_ips),
            forwarded_allow_ips=forwarded_allow_ips or "",
            server_header=False,
            log_level="info",
            log_config=log_config(),
        )
        # Bind before starting, so a busy port or a bad address is one clear line.
        listening = stack.enter_context(_listen(host, port))
        click.echo(f"Serving on http://{host}:{port}/ (public address {settings.web.base_url})")
        uvicorn.Server(config).run(sockets=[listening])


@contextlib.contextmanager
def _listen(host: str, port: int) -> Iterator[socket.socket]:
    try:
        infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE)
        family, kind, proto, _, address = infos[0]
        listening = socket.socket(family, kind, proto)
    except OSError as exc:
        raise BulletinError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
    with listening:
        try:
            listening.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            listening.bind(address)
            listening.listen(2048)
        except OSError as exc:
            raise BulletinError(f"cannot listen on {host}:{port}: {exc.strerror or exc}") from None
        yield listening


@click.group()
def web() -> None:
    """Pieces of the web pages for other sites."""


@web.command()
@click.option("--lang", "language", help="Language of the form (default: default_language).")
@pass_app
def snippet(app: App, language: str | None) -> None:
    """Print an HTML subscription form to paste into another site's pages.

    The form posts to web.base_url/subscribe; add the site's origin to web.embed_origins, or
    its posts are refused. Visitors land on the usual "check your inbox" page.

    Example:

        bulletin web snippet --lang es > formulario.html
    """
    from bulletin.web.snippet import subscribe_snippet

    settings = app.settings
    click.echo(subscribe_snippet(settings, language or settings.default_language), nl=False)


def register(cli: click.Group) -> None:
    """Add this area's commands to the CLI."""
    cli.add_command(serve)
    cli.add_command(web)
