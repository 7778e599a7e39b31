"""The HTML pages, their static files, and the security headers of every answer (issue 7).

- `GET /`: a signed-in user goes to their page by role (admin and staff: the board; watchers and
  volunteers: the phone page; family: the family page; a role without a screen gets a short page
  that says so); anyone else goes to `/login`.
- `GET /login`: the sign-in page (static/login.html, login.js; zh-CN first).
- `GET /board`, `/office`, `/phone`, `/family`: the page's HTML (gateway/web/static/<page>.html)
  for a signed-in user of the page's roles (`PAGES`); signed out: 303 to `/login?next=<path>`;
  another role: a 403 page. The pages themselves read everything through `/api/v1` with the
  session cookie (and its CSRF token for changes).
- `/static/...`: the scripts, styles, translations and icons (Starlette's StaticFiles), all
  served by the gateway itself: nothing comes from a CDN.

`SecurityHeaders` (an ASGI middleware registered by gateway/api.py `create_app`) adds to every
answer a strict Content-Security-Policy (scripts, styles, images, connections from this origin
only: no inline script or style, so an injected `<script>` does not run), `nosniff`,
`Referrer-Policy: no-referrer`, `X-Frame-Options: DENY`, and `Cache-Control: no-store` on
`/api` and the pages (what a signed-in user saw is not kept in a shared cache).
"""

from __future__ import annotations

import html
import mimetypes
import re
from collections.abc import Iterable
from urllib.parse import quote

from fastapi import APIRouter, Request
from fastapi.responses import FileResponse, HTMLResponse, RedirectResponse, Response
from starlette.datastructures import MutableHeaders
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from gateway.accounts import SESSION_COOKIE, Session, lookup_session
from gateway.auth import Role
from gateway.runtime import Runtime
from gateway.web import STATIC_DIR

# Who may open which page.
PAGES: dict[str, frozenset[Role]] = {
    "board": frozenset({Role.ADMIN, Role.STAFF}),
    "office": frozenset({Role.ADMIN, Role.STAFF}),
    "phone": frozenset({Role.WATCHER, Role.VOLUNTEER, Role.STAFF}),
    "family": frozenset({Role.FAMILY}),
}
# Where `/` sends a role.
HOME: dict[Role, str] = {
    Role.ADMIN: "/board",
    Role.STAFF: "/board",
    Role.WATCHER: "/phone",
    Role.VOLUNTEER: "/phone",
    Role.FAMILY: "/family",
}

CSP = (
    "default-src 'self'; img-src 'self' data:; media-src 'self' data:; connect-src 'self'; "
    "frame-ancestors 'none'; base-uri 'none'; form-action 'self'; object-src 'none'"
)
# FastAPI's own API documentation (/docs, /redoc) is Swagger UI and ReDoc from their CDN with
# inline scripts: it keeps working under a policy of its own. It shows no one's data.
DOCS_CSP = (
    "default-src 'self'; script-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "style-src 'self' 'unsafe-inline' https://cdn.jsdelivr.net; "
    "img-src 'self' data: https://fastapi.tiangolo.com https://cdn.redoc.ly; "
    "worker-src 'self' blob:; frame-ancestors 'none'; base-uri 'none'"
)
DOCS_PATHS = frozenset({"/docs", "/docs/oauth2-redirect", "/redoc"})
_SAFE_NEXT = re.compile(r"^/(?![/\\])[A-Za-z0-9\-._~!$&'()*+,;=:@/?%]*$")

mimetypes.add_type("application/manifest+json", ".webmanifest")
mimetypes.add_type("text/javascript", ".js")  # some systems still say application/javascript


def safe_next(target: str | None) -> str | None:
    """`target` when it is a path on this site (so `?next=` never sends anyone elsewhere:
    no scheme, no `//host`, no backslash tricks), else None."""
    if not target or len(target) > 500 or not _SAFE_NEXT.fullmatch(target):
        return None
    return target


def _session(request: Request) -> Session | None:
    cookie = request.cookies.get(SESSION_COOKIE)
    if not cookie:
        return None
    rt: Runtime = request.app.state.runtime
    return lookup_session(rt.engine, cookie, now_ms=rt.now_ms(), idle_s=rt.settings.session_idle_s)


def _to_login(request: Request) -> RedirectResponse:
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    return RedirectResponse(f"/login?next={quote(here, safe='')}", status_code=303)


def _small_page(
    status_code: int, title_zh: str, title_en: str, lines: Iterable[str]
) -> HTMLResponse:
    """A page with no script: both languages, a way home and a way to sign out."""
    body = "".join(f"<p>{html.escape(line)}</p>" for line in lines)
    text = (
        '<!doctype html><html lang="zh-CN"><head><meta charset="utf-8">'
        '<meta name="viewport" content="width=device-width, initial-scale=1">'
        f"<title>{html.escape(title_zh)} · 守望</title>"
        '<link rel="stylesheet" href="/static/base.css">'
        '<link rel="stylesheet" href="/static/login.css"></head>'
        '<body class="login"><main class="card">'
        f'<h1>{html.escape(title_zh)}</h1><p class="muted" lang="en">{html.escape(title_en)}</p>'
        f"{body}"
        '<p class="links"><a href="/">首页 Home</a> · '
        '<a href="/login?signout=1">退出登录 Sign out</a></p>'
        "</main></body></html>"
    )
    return HTMLResponse(text, status_code=status_code)


def _page(request: Request, name: str) -> Response:
    session = _session(request)
    if session is None:
        return _to_login(request)
    role = session.user.role
    if role not in PAGES[name]:
        return _small_page(
            403,
            "您没有权限打开此页面",
            "This page is not for your role",
            [
                f"账号 {session.user.username}（{role}）不能使用此页面。",
                f"The account {session.user.username} ({role}) may not use this page.",
            ],
        )
    html_file = STATIC_DIR / f"{name}.html"
    if not html_file.is_file():  # a page not built (yet): say so rather than fail
        return _small_page(404, "页面不存在", "No such page", [f"/{name}"])
    return FileResponse(html_file, media_type="text/html; charset=utf-8")


router = APIRouter(include_in_schema=False)


@router.get("/")
def home(request: Request) -> Response:
    session = _session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    target = HOME.get(session.user.role)
    if target is not None:
        return RedirectResponse(target, status_code=303)
    return _small_page(
        200,
        "此角色暂无可用页面",
        "There is no screen for this role yet",
        [
            f"您已登录为 {session.user.username}（{session.user.role}），"
            "您的工作请使用服务站提供的应用或接口。",
            f"You are signed in as {session.user.username} ({session.user.role}); "
            "use the station's app or the API for your work.",
        ],
    )


@router.get("/login")
def login_page() -> FileResponse:
    return FileResponse(STATIC_DIR / "login.html", media_type="text/html; charset=utf-8")


@router.get("/board")
def board_page(request: Request) -> Response:
    return _page(request, "board")


@router.get("/office")
def office_page(request: Request) -> Response:
    return _page(request, "office")


@router.get("/phone")
def phone_page(request: Request) -> Response:
    return _page(request, "phone")


@router.get("/family")
def family_page(request: Request) -> Response:
    return _page(request, "family")


router.mount("/static", StaticFiles(directory=STATIC_DIR), name="static")


class SecurityHeaders:
    """Adds the security headers (see the module's doc) to every HTTP answer."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope.get("path", "")
        no_store = not path.startswith("/static/")
        csp = DOCS_CSP if path in DOCS_PATHS else CSP

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                headers.setdefault("Content-Security-Policy", csp)
                headers.setdefault("X-Content-Type-Options", "nosniff")
                headers.setdefault("Referrer-Policy", "no-referrer")
                headers.setdefault("X-Frame-Options", "DENY")
                if no_store:
                    headers["Cache-Control"] = "no-store"
            await send(message)

        await self.app(scope, receive, send_with_headers)
