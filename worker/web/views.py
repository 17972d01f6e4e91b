"""The HTML pages: claims, clusters, speakers, articles, feeds, jobs, status, sign-in
and the API's docs page. Server-rendered; every list has a stable URL (its filters and
cursor in the query string) and links to its CSV and JSON-lines downloads. Forms that
change state need a signed-in session and carry a CSRF token."""

from __future__ import annotations

import json
from typing import Annotated, Any
from urllib.parse import quote, unquote

from fastapi import APIRouter, Depends, Form, Query, Request, UploadFile
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from starlette.exceptions import HTTPException

from worker.claims.fulltext import ClaimFilter
from worker.web import actions, listings, rendering
from worker.web.actions import BadInput, parse_when
from worker.web.api import (
    Cursor,
    Day,
    Id,
    article_filter,
    claim_filter,
    cluster_filter,
    guard_of,
    settings_of,
    status_data,
)
from worker.web.reads import read_session
from worker.web.webauth import (
    PRESIGN_COOKIE,
    SESSION_COOKIE,
    SESSION_SECONDS,
    same_origin,
    set_cookie,
)

router = APIRouter(include_in_schema=False)

PAGE_SIZE = 50
FLASH_COOKIE = "claimwire_flash"


def render(request: Request, template: str, status_code: int = 200, **context: Any) -> HTMLResponse:
    guard = guard_of(request)
    flash = None
    raw = request.cookies.get(FLASH_COOKIE)
    if raw:
        try:
            value = json.loads(unquote(raw))
            if isinstance(value, dict):
                flash = {"kind": str(value.get("kind", "ok")), "text": str(value.get("text", ""))}
        except ValueError:
            flash = None
    context.setdefault("flash", flash)
    html = request.app.state.templates.get_template(template).render(
        request=request,
        path=request.url.path,
        params=dict(request.query_params),
        writable=guard.writable,
        signed_in=guard.signed_in(request),
        csrf=guard.csrf_for(request),
        **context,
    )
    response = HTMLResponse(html, status_code=status_code)
    if raw:
        response.delete_cookie(FLASH_COOKIE, path="/")
    return response


def redirect_with(request: Request, to: str, text: str, kind: str = "ok") -> RedirectResponse:
    response = RedirectResponse(to, status_code=303)
    set_cookie(response, request, FLASH_COOKIE, quote(json.dumps({"kind": kind, "text": text})), 60)
    return response


def _query_string(request: Request) -> str:
    qs = request.url.query
    return "?" + qs if qs else ""


# ------------------------------------------------------------------------ read pages


@router.get("/")
def home() -> RedirectResponse:
    return RedirectResponse("/claims", status_code=307)


@router.get("/claims")
def claims_page(
    request: Request,
    f: Annotated[ClaimFilter, Depends(claim_filter)],
    cursor: Cursor = None,
) -> HTMLResponse:
    with read_session(settings_of(request)) as s:
        rows, nxt = listings.claims_page(s, f, cursor, PAGE_SIZE)
    download = _download_query(request)
    return render(
        request,
        "claims.html",
        title="Claims",
        rows=rows,
        next_cursor=nxt,
        filtered=any(v for k, v in request.query_params.items() if k != "cursor"),
        download=download,
    )


def _download_query(request: Request) -> str:
    items = [(k, v) for k, v in request.query_params.multi_items() if k != "cursor"]
    from urllib.parse import urlencode

    return "?" + urlencode(items) if items else ""


@router.get("/clusters")
def clusters_page(
    request: Request,
    f: Annotated[listings.ClusterFilter, Depends(cluster_filter)],
    cursor: Cursor = None,
) -> HTMLResponse:
    with read_session(settings_of(request)) as s:
        rows, nxt = listings.clusters_page(s, f, cursor, PAGE_SIZE)
    return render(
        request,
        "clusters.html",
        title="Clusters",
        rows=rows,
        next_cursor=nxt,
        download=_download_query(request),
    )


@router.get("/clusters/{cluster_id}")
def cluster_page(
    request: Request, cluster_id: Id, cursor: Cursor = None, start: Day = None
) -> HTMLResponse:
    with read_session(settings_of(request)) as s:
        cluster = listings.cluster_detail(
            s, cluster_id, cursor, listings.CLUSTER_PAGE, parse_when(start, "start")
        )
    members = cluster["members"]
    one_page = not cursor and not start and cluster["next_cursor"] is None
    return render(
        request,
        "cluster.html",
        title=f"Cluster {cluster_id}",
        cluster=cluster,
        chart=rendering.spread_chart(cluster, one_page),
        counts=cluster["counts"],
        paged=bool(cursor or start),
        shown=(members[0]["position"], members[-1]["position"]) if members else None,
    )


@router.get("/speakers")
def speakers_page(
    request: Request,
    name: Annotated[str | None, Query(max_length=200)] = None,
    cursor: Cursor = None,
) -> HTMLResponse:
    with read_session(settings_of(request)) as s:
        rows, nxt = listings.speakers_page(s, name, cursor, PAGE_SIZE)
    return render(
        request,
        "speakers.html",
        title="Speakers",
        rows=rows,
        next_cursor=nxt,
        download=_download_query(request),
    )


@router.get("/speakers/{key}")
def speaker_page(request: Request, key: str) -> HTMLResponse:
    if len(key) > 200:
        raise BadInput("speaker key is too long")
    with read_session(settings_of(request)) as s:
        speaker = listings.speaker_detail(s, key)
    return render(
        request,
        "speaker.html",
        title=speaker["speaker"],
        speaker=speaker,
        chart=rendering.speaker_chart(speaker["clusters"]),
    )


@router.get("/articles")
def articles_page(
    request: Request,
    f: Annotated[listings.ArticleFilter, Depends(article_filter)],
    cursor: Cursor = None,
) -> HTMLResponse:
    with read_session(settings_of(request)) as s:
        rows, nxt = listings.articles_page(s, f, cursor, PAGE_SIZE)
    return render(
        request,
        "articles.html",
        title="Articles",
        rows=rows,
        next_cursor=nxt,
        download=_download_query(request),
        states=[
            "processed",
            "discovered",
            "fetched",
            "extracted",
            "deduplicated",
            "skipped",
            "failed",
            "quarantined",
        ],
    )


@router.get("/articles/{article_id}")
def article_page(request: Request, article_id: Id) -> HTMLResponse:
    with read_session(settings_of(request)) as s:
        article = listings.article_detail(s, article_id)
    return render(
        request,
        "article.html",
        title=article["title"] or f"Article {article_id}",
        article=article,
        segments=rendering.text_segments(article["text"] or "", article["claims"]),
    )


@router.get("/feeds")
def feeds_page(
    request: Request,
    state: Annotated[str | None, Query(max_length=20)] = None,
    cursor: Cursor = None,
) -> HTMLResponse:
    if state and state not in ("active", "failing", "dead", "paused"):
        raise BadInput(f"state: {state!r} is not one of active, failing, dead, paused")
    with read_session(settings_of(request)) as s:
        rows, nxt = listings.feeds_page(s, state, cursor, PAGE_SIZE)
    return render(
        request,
        "feeds.html",
        title="Feeds",
        rows=rows,
        next_cursor=nxt,
        download=_download_query(request),
    )


@router.get("/jobs")
def jobs_page(request: Request, cursor: Cursor = None) -> HTMLResponse:
    settings = settings_of(request)
    with read_session(settings) as s:
        rows, nxt = listings.jobs_page(s, None, cursor, PAGE_SIZE, settings)
    return render(
        request,
        "jobs.html",
        title="Jobs",
        rows=rows,
        next_cursor=nxt,
        live=any(r["state"] in ("queued", "running") for r in rows),
    )


@router.get("/status")
def status_page(request: Request) -> HTMLResponse:
    return render(request, "status.html", title="Status", status=status_data(settings_of(request)))


@router.get("/api")
@router.get("/api/docs")
def api_docs(request: Request) -> HTMLResponse:
    schema = request.app.openapi()
    endpoints = []
    for path, methods in schema.get("paths", {}).items():
        for method, op in methods.items():
            params = []
            for p in op.get("parameters", []):
                s = p.get("schema", {})
                kind = s.get("type") or "/".join(
                    str(a.get("type") or a.get("const") or "") for a in s.get("anyOf", [])
                )
                if "enum" in s:
                    kind = " | ".join(str(v) for v in s["enum"])
                for alt in s.get("anyOf", []):
                    if "enum" in alt:
                        kind = " | ".join(str(v) for v in alt["enum"])
                params.append(
                    {
                        "name": p["name"],
                        "in": p["in"],
                        "required": p.get("required", False),
                        "type": kind,
                        "description": p.get("description") or s.get("description") or "",
                    }
                )
            endpoints.append(
                {
                    "method": method.upper(),
                    "path": path,
                    "summary": op.get("summary", ""),
                    "description": op.get("description", ""),
                    "tag": (op.get("tags") or ["other"])[0],
                    "params": params,
                    "body": "requestBody" in op,
                    "write": method.upper() != "GET",
                }
            )
    return render(request, "apidocs.html", title="API", endpoints=endpoints)


# ------------------------------------------------------------------------- sign in


@router.get("/signin")
def signin_page(request: Request, error: str | None = None) -> HTMLResponse:
    import secrets

    guard = guard_of(request)
    nonce = request.cookies.get(PRESIGN_COOKIE) or secrets.token_urlsafe(16)
    response = render(request, "signin.html", title="Sign in", nonce=nonce, error=error)
    if guard.writable:
        set_cookie(response, request, PRESIGN_COOKIE, nonce, 3600)
    return response


@router.post("/signin")
def signin(
    request: Request,
    token: Annotated[str, Form(max_length=1000)] = "",
    nonce: Annotated[str, Form(max_length=100)] = "",
) -> Response:
    import hmac

    guard = guard_of(request)
    if not guard.writable:
        raise HTTPException(403, "this claimwire is read-only: it was started without a token")
    if not same_origin(request):
        raise HTTPException(403, "this form was sent from another site")
    expected = request.cookies.get(PRESIGN_COOKIE) or ""
    if not expected or not hmac.compare_digest(expected.encode(), nonce.encode()):
        raise HTTPException(403, "the sign-in form expired: open it again and resend it")
    if not guard.token_matches(token.strip()):
        response = render(
            request, "signin.html", 401, title="Sign in", nonce=expected, error="wrong token"
        )
        return response
    done = redirect_with(request, "/feeds", "Signed in: you can change feeds and jobs.")
    set_cookie(done, request, SESSION_COOKIE, guard.new_session(), SESSION_SECONDS)
    done.delete_cookie(PRESIGN_COOKIE, path="/")
    return done


@router.post("/signout")
def signout(request: Request, csrf: Annotated[str, Form(max_length=200)] = "") -> Response:
    check_form(request, csrf)
    response = redirect_with(request, "/claims", "Signed out.")
    response.delete_cookie(SESSION_COOKIE, path="/")
    return response


def check_form(request: Request, csrf: str) -> None:
    """A state-changing form: a token is configured, this browser is signed in, the
    form came from this site and carries this session's CSRF token."""
    guard = guard_of(request)
    if not guard.writable:
        raise HTTPException(403, "this claimwire is read-only: it was started without a token")
    if not same_origin(request):
        raise HTTPException(403, "this form was sent from another site")
    if not guard.signed_in(request):
        raise HTTPException(401, "sign in with the token first (/signin)")
    if not guard.csrf_ok(request, csrf):
        raise HTTPException(
            403, "this form expired (CSRF check): reload the page and send it again"
        )


def _form_error(request: Request, page: str, exc: Exception) -> Response:
    return redirect_with(request, page, str(exc), "error")


# ---------------------------------------------------------------------- feed forms


@router.post("/feeds/add")
def add_feed(
    request: Request,
    url: Annotated[str, Form(max_length=2000)] = "",
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    check_form(request, csrf)
    if not url.strip():
        raise BadInput("give the feed's URL")
    result = actions.add_feeds(settings_of(request), [(url.strip(), None, [])], strict=True)
    text = f"Added {result.added[0]}" if result.added else f"Already there: {result.existing[0]}"
    return redirect_with(request, "/feeds", text)


@router.post("/feeds/import")
async def import_feeds(request: Request) -> Response:
    form = await request.form(max_files=1, max_fields=5)
    check_form(request, str(form.get("csrf") or ""))
    upload = form.get("opml")
    if not isinstance(upload, UploadFile):
        raise BadInput("choose an OPML file to import")
    data = await upload.read(actions.MAX_OPML_BYTES + 1)
    from starlette.concurrency import run_in_threadpool

    result = await run_in_threadpool(actions.import_opml, settings_of(request), data)
    text = (
        f"Imported {len(result.added)} new feeds, {len(result.existing)} already there, "
        f"{len(result.invalid)} refused"
    )
    if result.invalid:
        text += ": " + "; ".join(result.invalid[:3])
    return redirect_with(request, "/feeds", text, "error" if result.invalid else "ok")


@router.post("/feeds/{feed_id}/{action}")
def change_feed(
    request: Request,
    feed_id: Id,
    action: str,
    csrf: Annotated[str, Form(max_length=200)] = "",
) -> Response:
    check_form(request, csrf)
    row = actions.feed_action(settings_of(request), feed_id, action)
    said = {"pause": "paused", "resume": "resumed", "poll": "due now"}[action]
    return redirect_with(request, "/feeds", f"Feed {feed_id} {said}: {row['url']}")


# ----------------------------------------------------------------------- job forms


@router.post("/jobs/start")
def start_job(
    request: Request,
    kind: Annotated[str, Form(max_length=40)],
    csrf: Annotated[str, Form(max_length=200)] = "",
    feeds: Annotated[str, Form(max_length=20000)] = "",
    url: Annotated[str, Form(max_length=2000)] = "",
    urls: Annotated[str, Form(max_length=2_000_000)] = "",
    since: Annotated[str, Form(max_length=40)] = "",
    until: Annotated[str, Form(max_length=40)] = "",
    outlet: Annotated[str, Form(max_length=200)] = "",
    include_undated: Annotated[bool, Form()] = False,
    older_extractor: Annotated[bool, Form()] = False,
) -> Response:
    check_form(request, csrf)
    req = actions.JobRequest(
        kind=kind,
        feeds=[f for f in feeds.replace(",", " ").split() if f],
        url=url or None,
        urls=urls.splitlines(),
        since=since or None,
        until=until or None,
        include_undated=include_undated,
        outlet=outlet or None,
        older_extractor=older_extractor,
    )
    job_id = actions.start_job(settings_of(request), req)
    return redirect_with(request, "/jobs", f"Job {job_id} started ({kind.replace('_', ' ')})")


@router.post("/jobs/{job_id}/{action}")
def change_job(
    request: Request, job_id: Id, action: str, csrf: Annotated[str, Form(max_length=200)] = ""
) -> Response:
    check_form(request, csrf)
    state = actions.job_action(settings_of(request), job_id, action)
    return redirect_with(request, "/jobs", f"Job {job_id} {state}")
