"""`moderation serve`: the review HTTP API (OpenAPI at /openapi.json) and the moderators' web page.

Authentication: a browser logs in at /login and gets a session cookie (HttpOnly, SameSite=Lax; Secure and
named `__Host-moderation_session` when served over HTTPS); every unsafe request made with that cookie must
carry the session's CSRF token (form field `csrf_token` or header `X-CSRF-Token`). API clients send
`Authorization: Bearer <token>` (`moderation users token`). Every route except /login, /api/login, /health
and /metrics refuses anonymous access. Tenant isolation lives in service.py: a post of a tenant the user
is not a member of does not exist for them (404).

Every unsafe request from a browser (Sec-Fetch-Site, else Origin) must come from this site, /login
included (login CSRF). Logins are throttled per address and per account (429 with Retry-After). Every
answer carries a Content-Security-Policy without any script, frame-ancestors 'none', nosniff, a
Referrer-Policy and Cache-Control: no-store. A 422 names the fields at fault, never the values sent.
"""

from __future__ import annotations

import logging
from dataclasses import asdict
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from urllib.parse import quote, urlsplit

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.concurrency import run_in_threadpool
from fastapi.exceptions import RequestValidationError
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import AfterValidator, BaseModel, BeforeValidator, Field
from sqlalchemy import Engine
from starlette.datastructures import MutableHeaders
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from moderation import metrics
from moderation.errors import Busy, Conflict, Forbidden, Invalid, NotFound, Throttled
from moderation.plugins.registry import available_plugins
from moderation.review import auth, service
from moderation.review.auth import Principal
from moderation.review.evidence import passages, segments
from moderation.review.settings import ReviewSettings
from moderation.review.throttle import LoginGate

log = logging.getLogger(__name__)

SESSION_COOKIE = "moderation_session"
# Over HTTPS: the __Host- prefix makes browsers keep the cookie only if it is Secure, host-only, Path=/.
SECURE_SESSION_COOKIE = "__Host-moderation_session"
# The service's refusals as HTTP statuses.
STATUS_OF: dict[type[Exception], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Invalid: 422,
}
HERE = Path(__file__).parent
TEMPLATES = Jinja2Templates(directory=str(HERE / "templates"))
# The queue's plugin filter lists whatever plugins are installed (third-party ones included).
TEMPLATES.env.globals["installed_plugins"] = lambda: sorted(available_plugins())
# A post id or tenant inside a URL path: every reserved character escaped, "/" too (ids may hold ? # % /).
TEMPLATES.env.filters["segment"] = lambda value: quote(str(value), safe="")
TEMPLATES.env.globals["reason_max"] = service.REASON_MAX_CHARS

# No script at all, styles only from /static, forms only to this site, never inside a frame.
CSP = (
    "default-src 'none'; style-src 'self'; img-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'"
)
SECURITY_HEADERS = {
    "Content-Security-Policy": CSP,
    "X-Content-Type-Options": "nosniff",
    "X-Frame-Options": "DENY",
    # same-origin (not no-referrer): browsers then still send the Origin header on same-site form posts.
    "Referrer-Policy": "same-origin",
    "Cross-Origin-Opener-Policy": "same-origin",
}
UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})

# Statuses every route may answer besides its success, for the OpenAPI document (schemathesis checks them).
Responses = dict[int | str, dict[str, Any]]
_ERROR: dict[str, Any] = {"description": "refused", "content": {"application/json": {"example": {"detail": "..."}}}}
COMMON: Responses = {400: _ERROR, 403: _ERROR, 422: _ERROR}
AUTHED: Responses = {**COMMON, 401: _ERROR}
POST_ROUTE: Responses = {**AUTHED, 404: _ERROR}
WRITE_ROUTE: Responses = {**POST_ROUTE, 409: _ERROR}
LOGIN_ROUTE: Responses = {**COMMON, 401: _ERROR, 429: _ERROR, 503: _ERROR}


def _iso_only(value: object) -> object:
    """The API documents ISO 8601 date-times; pydantic would also take a bare number as a Unix time, which the
    document does not promise, so a number is refused (found by schemathesis' negative data)."""
    if isinstance(value, int | float) or (
        isinstance(value, str) and value.strip().lstrip("+-").replace(".", "", 1).isdigit()
    ):
        raise ValueError("expected an ISO 8601 date-time such as 2026-11-23T12:00:00Z")
    return value


def _in_utc(value: datetime) -> datetime:
    """As UTC (a naive time is taken as UTC): PostgreSQL refuses offsets beyond 15:59, which Python accepts,
    so an offset such as +16:00 would otherwise reach the database and fail there (schemathesis found it)."""
    return value.replace(tzinfo=UTC) if value.tzinfo is None else value.astimezone(UTC)


IsoTime = Annotated[datetime, BeforeValidator(_iso_only), AfterValidator(_in_utc)]


class DecisionIn(BaseModel):
    decision: Literal["confirm", "overturn", "escalate"]
    reason: Annotated[str, Field(min_length=1, max_length=service.REASON_MAX_CHARS)]
    action: Literal["label", "quarantine", "block"] | None = None
    # The post revision the moderator saw; if the post was edited since, the decision is refused (409).
    revision: int | None = None


class BulkIn(DecisionIn):
    tenant: str
    ids: Annotated[list[str], Field(min_length=1, max_length=service.BULK_MAX_POSTS)]
    dry_run: bool = True


class LoginIn(BaseModel):
    username: Annotated[str, Field(max_length=256)]
    password: Annotated[str, Field(max_length=1024)]


def post_path(tenant: str, post_id: str, tail: str = "") -> str:
    """The page of a post, every part escaped (the template filter `segment` does the same)."""
    return f"/posts/{quote(tenant, safe='')}/{quote(post_id, safe='')}{tail}"


def is_secure(request: Request) -> bool:
    settings: ReviewSettings = request.app.state.settings
    return settings.secure_cookies or request.url.scheme == "https"


def session_cookie(request: Request) -> str:
    return SECURE_SESSION_COOKIE if is_secure(request) else SESSION_COOKIE


def origin_allowed(request: Request) -> bool:
    """May this unsafe request proceed? Browsers say where it comes from: Sec-Fetch-Site (modern ones),
    else Origin. A client that sends neither is no browser acting for a user (curl, API clients)."""
    site = request.headers.get("sec-fetch-site")
    if site is not None:
        return site in ("same-origin", "none")
    origin = request.headers.get("origin")
    if origin is None:
        return True
    settings: ReviewSettings = request.app.state.settings
    own = f"{request.url.scheme}://{request.headers.get('host', '')}"
    parts = urlsplit(origin)
    return (
        origin.lower() == own.lower()
        or origin in settings.trusted_origins
        or (
            # a reverse proxy that terminates TLS: same host, the browser saw https
            parts.scheme == "https"
            and parts.netloc.lower() == request.headers.get("host", "").lower()
            and settings.secure_cookies
        )
    )


class Guard:
    """Refuse cross-site unsafe requests (403); put the security headers on every answer. Plain ASGI, so it
    costs next to nothing per request (it runs for every throttled login of a flood, too)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        request = Request(scope)
        static = scope["path"].startswith("/static/")
        https = scope.get("scheme") == "https"

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                headers = MutableHeaders(scope=message)
                for name, value in SECURITY_HEADERS.items():
                    headers[name] = value
                if static:
                    headers.setdefault("Cache-Control", "public, max-age=3600")
                else:
                    # Pages and API answers carry post texts and CSRF tokens: no cache may keep them.
                    headers["Cache-Control"] = "no-store"
                if https:
                    headers["Strict-Transport-Security"] = "max-age=31536000"
            await send(message)

        if request.method in UNSAFE_METHODS and not origin_allowed(request):
            refused = JSONResponse({"detail": "cross-site request refused"}, status_code=403)
            await refused(scope, receive, send_with_headers)
            return
        await self.app(scope, receive, send_with_headers)


def current(request: Request) -> Principal:
    """The caller: from a bearer token, else from the session cookie; anonymous callers are refused."""
    header = request.headers.get("authorization", "")
    settings: ReviewSettings = request.app.state.settings
    cookie = request.cookies.get(session_cookie(request))
    with request.app.state.db.begin() as conn:
        if header.lower().startswith("bearer "):
            who = auth.principal_from_token(conn, header[7:].strip())
        elif cookie:
            who = auth.principal_from_session(conn, cookie, settings.session_idle_minutes)
        else:
            who = None
    if who is None:
        if request.url.path.startswith("/api/") or request.url.path == "/openapi.json":
            raise HTTPException(401, "log in or send a bearer token", headers={"WWW-Authenticate": "Bearer"})
        raise HTTPException(303, headers={"Location": "/login"})
    return who


async def checked(request: Request, who: Annotated[Principal, Depends(current)]) -> Principal:
    """For unsafe methods with a session cookie: the CSRF token must come back (a bearer token is exempt)."""
    if who.csrf_token is not None:
        presented = request.headers.get("x-csrf-token")
        if presented is None and request.headers.get("content-type", "").startswith(
            ("application/x-www-form-urlencoded", "multipart/form-data")
        ):
            field = (await request.form()).get("csrf_token")
            presented = field if isinstance(field, str) else None
        if not auth.csrf_ok(who, presented):
            raise HTTPException(403, "missing or wrong CSRF token")
    return who


Who = Annotated[Principal, Depends(current)]
Acting = Annotated[Principal, Depends(checked)]


def create_app(db: Engine, settings: ReviewSettings | None = None) -> FastAPI:
    settings = settings or ReviewSettings()
    app = FastAPI(
        title="moderation review API",
        version="1",
        description=__doc__ or "",
        openapi_url=None,  # served below, behind authentication
        docs_url=None,
        redoc_url=None,
    )
    app.state.db = db
    app.state.settings = settings
    gate = LoginGate(settings)
    app.mount("/static", StaticFiles(directory=str(HERE / "static")), name="static")

    def transaction() -> Any:
        return db.begin()

    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=STATUS_OF[type(exc)])

    for refusal in STATUS_OF:
        app.add_exception_handler(refusal, _refused)

    async def _invalid(_: Request, exc: Exception) -> JSONResponse:
        # FastAPI's own answer repeats the submitted values ("input"), passwords included: only say where
        # and what is wrong.
        errors = exc.errors() if isinstance(exc, RequestValidationError) else []
        return JSONResponse(
            {
                "detail": [
                    {"loc": list(e.get("loc", ())), "msg": e.get("msg", ""), "type": e.get("type", "")} for e in errors
                ]
            },
            status_code=422,
        )

    app.add_exception_handler(RequestValidationError, _invalid)

    app.add_middleware(Guard)

    # ---- open routes ------------------------------------------------------------------------------
    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        with transaction() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics_page() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    async def _login(request: Request, response: Response, username: str, password: str) -> str | None:
        """The session's CSRF token, or None for a wrong username or password. Raises 429 (throttled) or
        503 (too many checks waiting). The password is checked outside any transaction."""
        address = request.client.host if request.client else "unknown"
        try:
            gate.admit(address, username)
        except Throttled as over:
            metrics.REVIEW_LOGINS_REFUSED.labels(f"throttled_{over.scope}").inc()
            if over.first:
                log.warning("login throttled (%s): account=%r address=%s", over.scope, username[:64], address)
            raise HTTPException(
                429, "too many login attempts; try again later", headers={"Retry-After": str(over.retry_after)}
            ) from None

        def record() -> tuple[int | None, str]:
            with transaction() as conn:
                return auth.password_record(conn, username[:64])

        uid, password_hash = await run_in_threadpool(record)
        try:
            right = await gate.verify(password_hash, password)
        except Busy:
            metrics.REVIEW_LOGINS_REFUSED.labels("busy").inc()
            raise HTTPException(503, "too many logins at once; try again", headers={"Retry-After": "1"}) from None

        def finish() -> tuple[str, str] | None:
            with transaction() as conn:
                who = auth.principal_for(conn, uid) if right and uid is not None else None
                if who is None:
                    auth.record_refused_login(conn, username, uid, address)
                    return None
                return auth.create_session(conn, who, settings.session_hours, settings.session_idle_minutes)

        made = await run_in_threadpool(finish)
        if made is None:
            metrics.REVIEW_LOGINS_REFUSED.labels("wrong_password").inc()
            return None
        gate.succeeded(username)
        session_id, csrf = made
        secure = is_secure(request)
        response.set_cookie(
            session_cookie(request),
            session_id,
            httponly=True,
            samesite="lax",
            secure=secure,
            path="/",
            max_age=int(settings.session_hours * 3600),
        )
        return csrf

    @app.post("/api/login", tags=["auth"], responses=LOGIN_ROUTE)
    async def api_login(request: Request, body: LoginIn, response: Response) -> dict[str, str]:
        csrf = await _login(request, response, body.username, body.password)
        if csrf is None:
            raise HTTPException(401, "wrong username or password")
        return {"csrf_token": csrf}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": None})

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    async def login_form(
        request: Request,
        username: Annotated[str, Form(max_length=256)],
        password: Annotated[str, Form(max_length=1024)],
    ) -> Response:
        redirect = RedirectResponse("/", status_code=303)
        try:
            csrf = await _login(request, redirect, username, password)
        except HTTPException as refused:
            if refused.status_code not in (429, 503):
                raise
            return TEMPLATES.TemplateResponse(
                request,
                "login.html",
                {"error": "Too many login attempts. Wait a minute and try again."},
                status_code=refused.status_code,
                headers=refused.headers,
            )
        if csrf is None:
            return TEMPLATES.TemplateResponse(
                request, "login.html", {"error": "Wrong username or password."}, status_code=401
            )
        return redirect

    # ---- API ---------------------------------------------------------------------------------------
    @app.get("/openapi.json", include_in_schema=False)
    def openapi(who: Who) -> dict[str, Any]:
        return app.openapi()

    @app.post("/api/logout", tags=["auth"], responses=AUTHED)
    def api_logout(request: Request, who: Acting) -> dict[str, bool]:
        with transaction() as conn:
            auth.end_session(conn, request.cookies.get(session_cookie(request), ""))
        return {"ok": True}

    @app.get("/api/me", tags=["auth"], responses=AUTHED)
    def me(who: Who) -> dict[str, Any]:
        return {"username": who.username, "roles": who.roles}

    @app.get("/api/queue", tags=["review"], responses={**AUTHED, 404: _ERROR})
    def api_queue(
        who: Who,
        tenant: str | None = None,
        action: Literal["review", "quarantine", "allow", "label", "block"] | None = None,
        plugin: str | None = None,
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        max_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        since: IsoTime | None = None,
        until: IsoTime | None = None,
        author: str | None = None,
        state: Literal["open", "pending", "escalated", "decided", "all"] = "open",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0, le=1_000_000_000)] = 0,
    ) -> list[dict[str, Any]]:
        flt = service.QueueFilter(
            tenant, action, plugin, min_score, max_score, since, until, author, state, limit, offset
        )
        with transaction() as conn:
            items = service.queue(conn, who, flt)
        for item in items:
            item.pop("text", None)
        return items

    @app.get("/api/posts/{tenant}/{post_id:path}", tags=["review"], responses=POST_ROUTE)
    def api_post(tenant: str, post_id: str, who: Who) -> dict[str, Any]:
        with transaction() as conn:
            return service.post_detail(conn, who, tenant, post_id, settings.evidence_posts_per_day)

    @app.post("/api/posts/{tenant}/{post_id:path}/claim", tags=["review"], responses=WRITE_ROUTE)
    def api_claim(tenant: str, post_id: str, who: Acting, override: bool = False) -> dict[str, Any]:
        """Take or renew the lease; `override=true` (admins) takes over another moderator's lease."""
        with transaction() as conn:
            return service.claim(
                conn, who, tenant, post_id, settings.lease_seconds, settings.lease_max_seconds, override
            )

    @app.post("/api/posts/{tenant}/{post_id:path}/release", tags=["review"], responses=POST_ROUTE)
    def api_release(tenant: str, post_id: str, who: Acting) -> dict[str, bool]:
        with transaction() as conn:
            service.release(conn, who, tenant, post_id)
        return {"ok": True}

    @app.post("/api/posts/{tenant}/{post_id:path}/decision", tags=["review"], responses=WRITE_ROUTE)
    def api_decide(tenant: str, post_id: str, body: DecisionIn, who: Acting) -> dict[str, Any]:
        with transaction() as conn:
            return service.decide(
                conn, who, tenant, post_id, body.decision, body.reason, body.action, revision=body.revision
            )

    @app.post("/api/decisions/bulk", tags=["review"], responses=POST_ROUTE)
    def api_bulk(body: BulkIn, who: Acting) -> dict[str, Any]:
        with transaction() as conn:
            return service.bulk_decide(
                conn, who, body.tenant, body.ids, body.decision, body.reason, body.action, body.dry_run
            )

    @app.get(
        "/api/decisions.csv",
        tags=["review"],
        response_class=PlainTextResponse,
        responses={**AUTHED, 404: _ERROR, 200: {"content": {"text/csv": {}}}},
    )
    def api_export(who: Who, tenant: str | None = None) -> Response:
        with transaction() as conn:
            body = service.export_decisions(conn, who, tenant)
        return Response(
            body, media_type="text/csv", headers={"Content-Disposition": "attachment; filename=decisions.csv"}
        )

    # ---- web page ----------------------------------------------------------------------------------
    @app.get("/", response_class=HTMLResponse, include_in_schema=False)
    def queue_page(
        request: Request,
        who: Who,
        tenant: str | None = None,
        action: str | None = None,
        plugin: str | None = None,
        author: str | None = None,
        state: str = "open",
    ) -> Response:
        flt = service.QueueFilter(
            tenant or None, action or None, plugin or None, author=author or None, state=state, limit=200
        )
        with transaction() as conn:
            items = service.queue(conn, who, flt)
        return TEMPLATES.TemplateResponse(
            request, "queue.html", {"who": who, "items": items, "filters": asdict(flt), "csrf": who.csrf_token}
        )

    @app.get("/posts/{tenant}/{post_id:path}", response_class=HTMLResponse, include_in_schema=False)
    def post_page(request: Request, tenant: str, post_id: str, who: Who) -> Response:
        with transaction() as conn:
            post = service.post_detail(conn, who, tenant, post_id, settings.evidence_posts_per_day)
        marked = next(
            (s for s in post["signals"] if s["plugin"] == "watermark" and (s.get("evidence") or s.get("window"))),
            None,
        )
        parts = passages(segments(post["text"] or "", marked))
        return TEMPLATES.TemplateResponse(
            request,
            "post.html",
            {
                "who": who,
                "post": post,
                "segments": parts,
                "csrf": who.csrf_token,
                "can_decide": who.can(tenant, "moderator"),
                "is_admin": who.can(tenant, "admin"),
            },
        )

    @app.post("/posts/{tenant}/{post_id:path}/claim", include_in_schema=False)
    async def claim_form(request: Request, tenant: str, post_id: str, who: Acting) -> Response:
        override = (await request.form()).get("override") == "yes"

        def run() -> None:
            with transaction() as conn:
                service.claim(conn, who, tenant, post_id, settings.lease_seconds, settings.lease_max_seconds, override)

        await run_in_threadpool(run)
        return RedirectResponse(post_path(tenant, post_id), status_code=303)

    @app.post("/posts/{tenant}/{post_id:path}/decide", include_in_schema=False)
    def decide_form(
        tenant: str,
        post_id: str,
        who: Acting,
        decision: Annotated[str, Form()],
        reason: Annotated[str, Form()],
        action: Annotated[str | None, Form()] = None,
        revision: Annotated[int | None, Form()] = None,
    ) -> Response:
        with transaction() as conn:
            service.decide(conn, who, tenant, post_id, decision, reason, action or None, revision=revision)
        return RedirectResponse("/", status_code=303)

    @app.post("/bulk", response_class=HTMLResponse, include_in_schema=False)
    async def bulk_form(request: Request, who: Acting) -> Response:
        form = await request.form()
        ids = [str(v) for v in form.getlist("ids")]
        tenant, decision = str(form.get("tenant", "")), str(form.get("decision", ""))
        reason, action = str(form.get("reason", "")), (str(form.get("action") or "") or None)
        confirmed = form.get("confirmed") == "yes"

        def run() -> dict[str, Any]:
            with transaction() as conn:
                return service.bulk_decide(conn, who, tenant, ids, decision, reason, action, dry_run=not confirmed)

        result = await run_in_threadpool(run)
        if confirmed:
            return RedirectResponse("/", status_code=303)
        return TEMPLATES.TemplateResponse(
            request,
            "bulk.html",
            {
                "who": who,
                "result": result,
                "tenant": tenant,
                "decision": decision,
                "reason": reason,
                "action": action,
                "csrf": who.csrf_token,
            },
        )

    @app.post("/logout", include_in_schema=False)
    def logout_form(request: Request, who: Acting) -> Response:
        with transaction() as conn:
            auth.end_session(conn, request.cookies.get(session_cookie(request), ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(session_cookie(request), path="/", secure=is_secure(request), httponly=True)
        return response

    return app
