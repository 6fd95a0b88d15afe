"""Security headers on every response: a strict content security policy, no framing, no referrer."""

from __future__ import annotations

from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

# No scripts anywhere; styles and images only from this site; forms only post here.
PAGE_POLICY = (
    "default-src 'none'; style-src 'self'; img-src 'self' data:; form-action 'self'; "
    "base-uri 'none'; frame-ancestors 'none'"
)
# The staff preview grid embeds the variant frames served by this site.
PREVIEW_GRID_POLICY = PAGE_POLICY + "; frame-src 'self'"
# A rendered email shown in a frame of the preview grid: its own inline styles and remote images,
# still no scripts, and only this site may frame it.
EMAIL_FRAME_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; font-src https:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'self'; sandbox allow-popups allow-popups-to-escape-sandbox"
)

# The public web version of a sent bulletin: the email's own inline styles and remote images,
# no scripts, no forms, never framed.
WEB_VERSION_POLICY = (
    "default-src 'none'; style-src 'unsafe-inline'; img-src https: http: data:; font-src https:; "
    "base-uri 'none'; form-action 'none'; frame-ancestors 'none'"
)


class SecurityHeadersMiddleware:
    """Adds the headers a response did not set itself."""

    def __init__(self, app: ASGIApp, *, https: bool) -> None:
        self.app = app
        self.defaults = {
            "Content-Security-Policy": PAGE_POLICY,
            "X-Content-Type-Options": "nosniff",
            # Signed links carry their token in the path; never pass it on to another site.
            "Referrer-Policy": "no-referrer",
            "X-Frame-Options": "DENY",
            "Cross-Origin-Opener-Policy": "same-origin",
            "Cross-Origin-Resource-Policy": "same-origin",
            "Permissions-Policy": "camera=(), microphone=(), geolocation=(), payment=()",
        }
        if https:
            self.defaults["Strict-Transport-Security"] = "max-age=31536000"

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        is_static = scope["path"].startswith("/static/")

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in self.defaults.items():
                    if name not in headers:
                        headers[name] = value
                # Pages carry CSRF tokens, personal choices or staff data: never store them.
                if not is_static and "cache-control" not in headers:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
