"""`moderation serve`: the review HTTP API (OpenAPI at /openapi.json) and the moderators' web page.

Authentication: a browser logs in at /login and gets a session cookie (HttpOnly, SameSite=Lax); every
unsafe request made with that cookie must carry the session's CSRF token (form field `csrf_token` or
header `X-CSRF-Token`). API clients send `Authorization: Bearer <token>` (`moderation users token`).
Every route except /login, /health and /metrics refuses anonymous access. Tenant isolation lives in
service.py: a post of a tenant the user is not a member of does not exist for them (404).
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Form, HTTPException, Query, Request, Response
from fastapi.responses import HTMLResponse, JSONResponse, PlainTextResponse, RedirectResponse
from fastapi.templating import Jinja2Templates
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from pydantic import BaseModel, Field
from sqlalchemy import Connection, Engine

from moderation.errors import Conflict, Forbidden, Invalid, NotFound
from moderation.review import auth, service
from moderation.review.auth import Principal
from moderation.review.evidence import passages, segments
from moderation.review.settings import ReviewSettings

SESSION_COOKIE = "moderation_session"
# The service's refusals as HTTP statuses.
STATUS_OF: dict[type[Exception], int] = {
    NotFound: 404,
    Forbidden: 403,
    Conflict: 409,
    Invalid: 422,
}
TEMPLATES = Jinja2Templates(directory=str(Path(__file__).parent / "templates"))


class DecisionIn(BaseModel):
    decision: Literal["confirm", "overturn", "escalate"]
    reason: Annotated[str, Field(min_length=1, max_length=2000)]
    action: Literal["label", "quarantine", "block"] | None = None


class BulkIn(DecisionIn):
    tenant: str
    ids: Annotated[list[str], Field(min_length=1, max_length=1000)]
    dry_run: bool = True


class LoginIn(BaseModel):
    username: str
    password: str


@contextmanager
def _transaction(request: Request) -> Iterator[Connection]:
    with request.app.state.db.begin() as conn:
        yield conn


def current(request: Request) -> Principal:
    """The caller: from a bearer token, else from the session cookie; anonymous callers are refused."""
    header = request.headers.get("authorization", "")
    with _transaction(request) as conn:
        if header.lower().startswith("bearer "):
            who = auth.principal_from_token(conn, header[7:].strip())
        elif request.cookies.get(SESSION_COOKIE):
            who = auth.principal_from_session(conn, request.cookies[SESSION_COOKIE])
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

    def transaction() -> Any:
        return db.begin()

    async def _refused(_: Request, exc: Exception) -> JSONResponse:
        return JSONResponse({"detail": str(exc)}, status_code=STATUS_OF[type(exc)])

    for refusal in STATUS_OF:
        app.add_exception_handler(refusal, _refused)

    # ---- open routes ------------------------------------------------------------------------------
    @app.get("/health", tags=["operations"])
    def health() -> dict[str, str]:
        with transaction() as conn:
            conn.exec_driver_sql("SELECT 1")
        return {"status": "ok"}

    @app.get("/metrics", tags=["operations"], response_class=PlainTextResponse)
    def metrics() -> Response:
        return Response(generate_latest(), media_type=CONTENT_TYPE_LATEST)

    def _login(response: Response, username: str, password: str) -> str | None:
        with transaction() as conn:
            who = auth.check_password(conn, username, password)
            if who is None:
                return None
            session_id, csrf = auth.create_session(conn, who, settings.session_hours)
        response.set_cookie(
            SESSION_COOKIE,
            session_id,
            httponly=True,
            samesite="lax",
            secure=settings.secure_cookies,
            max_age=int(settings.session_hours * 3600),
        )
        return csrf

    @app.post("/api/login", tags=["auth"])
    def api_login(body: LoginIn, response: Response) -> dict[str, str]:
        csrf = _login(response, body.username, body.password)
        if csrf is None:
            raise HTTPException(401, "wrong username or password")
        return {"csrf_token": csrf}

    @app.get("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_page(request: Request) -> Response:
        return TEMPLATES.TemplateResponse(request, "login.html", {"error": None})

    @app.post("/login", response_class=HTMLResponse, include_in_schema=False)
    def login_form(request: Request, username: Annotated[str, Form()], password: Annotated[str, Form()]) -> Response:
        redirect = RedirectResponse("/", status_code=303)
        if _login(redirect, username, password) is None:
            return TEMPLATES.TemplateResponse(
                request, "login.html", {"error": "Wrong username or password."}, status_code=401
            )
        return redirect

    # ---- API ---------------------------------------------------------------------------------------
    @app.get("/openapi.json", include_in_schema=False)
    def openapi(who: Who) -> dict[str, Any]:
        return app.openapi()

    @app.post("/api/logout", tags=["auth"])
    def api_logout(request: Request, who: Acting) -> dict[str, bool]:
        with transaction() as conn:
            auth.end_session(conn, request.cookies.get(SESSION_COOKIE, ""))
        return {"ok": True}

    @app.get("/api/me", tags=["auth"])
    def me(who: Who) -> dict[str, Any]:
        return {"username": who.username, "roles": who.roles}

    @app.get("/api/queue", tags=["review"])
    def api_queue(
        who: Who,
        tenant: str | None = None,
        action: Literal["review", "quarantine", "allow", "label", "block"] | None = None,
        plugin: str | None = None,
        min_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        max_score: Annotated[float | None, Query(ge=0, le=1)] = None,
        since: datetime | None = None,
        until: datetime | None = None,
        author: str | None = None,
        state: Literal["open", "pending", "escalated", "decided", "all"] = "open",
        limit: Annotated[int, Query(ge=1, le=1000)] = 100,
        offset: Annotated[int, Query(ge=0)] = 0,
    ) -> list[dict[str, Any]]:
        flt = service.QueueFilter(
            tenant, action, plugin, min_score, max_score, since, until, author, state, limit, offset
        )
        with transaction() as conn:
            items = service.queue(conn, who, flt)
        for item in items:
            item.pop("text", None)
        return items

    @app.get("/api/posts/{tenant}/{post_id}", tags=["review"])
    def api_post(tenant: str, post_id: str, who: Who) -> dict[str, Any]:
        with transaction() as conn:
            return service.post_detail(conn, who, tenant, post_id)

    @app.post("/api/posts/{tenant}/{post_id}/claim", tags=["review"])
    def api_claim(tenant: str, post_id: str, who: Acting) -> dict[str, Any]:
        with transaction() as conn:
            return service.claim(conn, who, tenant, post_id, settings.lease_seconds)

    @app.post("/api/posts/{tenant}/{post_id}/release", tags=["review"])
    def api_release(tenant: str, post_id: str, who: Acting) -> dict[str, bool]:
        with transaction() as conn:
            service.release(conn, who, tenant, post_id)
        return {"ok": True}

    @app.post("/api/posts/{tenant}/{post_id}/decision", tags=["review"])
    def api_decide(tenant: str, post_id: str, body: DecisionIn, who: Acting) -> dict[str, Any]:
        with transaction() as conn:
            return service.decide(conn, who, tenant, post_id, body.decision, body.reason, body.action)

    @app.post("/api/decisions/bulk", tags=["review"])
    def api_bulk(body: BulkIn, who: Acting) -> dict[str, Any]:
        with transaction() as conn:
            return service.bulk_decide(
                conn, who, body.tenant, body.ids, body.decision, body.reason, body.action, body.dry_run
            )

    @app.get("/api/decisions.csv", tags=["review"], response_class=PlainTextResponse)
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

    @app.get("/posts/{tenant}/{post_id}", response_class=HTMLResponse, include_in_schema=False)
    def post_page(request: Request, tenant: str, post_id: str, who: Who) -> Response:
        with transaction() as conn:
            post = service.post_detail(conn, who, tenant, post_id)
        marked = next((s for s in post["signals"] if s["plugin"] == "watermark" and s.get("evidence")), None)
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
            },
        )

    @app.post("/posts/{tenant}/{post_id}/claim", include_in_schema=False)
    def claim_form(tenant: str, post_id: str, who: Acting) -> Response:
        with transaction() as conn:
            service.claim(conn, who, tenant, post_id, settings.lease_seconds)
        return RedirectResponse(f"/posts/{tenant}/{post_id}", status_code=303)

    @app.post("/posts/{tenant}/{post_id}/decide", include_in_schema=False)
    def decide_form(
        tenant: str,
        post_id: str,
        who: Acting,
        decision: Annotated[str, Form()],
        reason: Annotated[str, Form()],
        action: Annotated[str | None, Form()] = None,
    ) -> Response:
        with transaction() as conn:
            service.decide(conn, who, tenant, post_id, decision, reason, action or None)
        return RedirectResponse("/", status_code=303)

    @app.post("/bulk", response_class=HTMLResponse, include_in_schema=False)
    async def bulk_form(request: Request, who: Acting) -> Response:
        form = await request.form()
        ids = [str(v) for v in form.getlist("ids")]
        tenant, decision = str(form.get("tenant", "")), str(form.get("decision", ""))
        reason, action = str(form.get("reason", "")), (str(form.get("action") or "") or None)
        confirmed = form.get("confirmed") == "yes"
        with transaction() as conn:
            result = service.bulk_decide(conn, who, tenant, ids, decision, reason, action, dry_run=not confirmed)
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
            auth.end_session(conn, request.cookies.get(SESSION_COOKIE, ""))
        response = RedirectResponse("/login", status_code=303)
        response.delete_cookie(SESSION_COOKIE)
        return response

    return app
