"""The dashboard's HTML pages and forms, and the file exports.

Handlers are plain ``def``: FastAPI runs them on worker threads, so SQLite reads and chart
writing never block the event loop.
"""

from __future__ import annotations

import csv
import io
import json
import math
import secrets
from datetime import date, datetime, timedelta, tzinfo
from typing import Any, Literal

from fastapi import APIRouter, Depends, Form, HTTPException, Path, Query, Request
from fastapi.responses import HTMLResponse, RedirectResponse, Response
from fastapi.templating import Jinja2Templates
from markupsafe import Markup, escape
from sqlite_utils import Database

from server import quality
from server.db import assign_device
from server.model import DEVICE_ID_PATTERN
from server.sit import SIT_COLUMNS, patient_sits, sit_results
from server.web import (auth, charts, edf, fhir, medications, night_quality, queries,
                        regularity, report, response)
from server.web.access import allow, public
from server.web.auth import ADMIN, CLINICIAN
from server.web.deps import (LOGIN_CSRF_COOKIE, SESSION_COOKIE, Principal, audit,
                             attachment, client_address, cookie_secure, get_db, render, safe_next,
                             state)
from server.web.trend import load_trend, verdict

router = APIRouter(include_in_schema=False)
PAGE_SIZE = 100
# "Not reporting" and "unassigned" show this many devices first (longest silence, by id), with
# their whole count, so the patients list costs O(page) even when a whole ward goes quiet.
SIDE_LIST_SIZE = 50
DeviceId = Path(pattern=DEVICE_ID_PATTERN, max_length=63)

# Shown on every night: what a shin accelerometer cannot know (docs/architecture.md, domain rules).
STANDING_CAVEATS = (
    "Respiratory-related leg movements are not excluded: there is no respiratory signal.",
    "Indices are per hour in bed, not per hour of sleep: there is no EEG (as PAM-RL reports them).",
)


# The clinic report adds what is true of every span of nights (docs/architecture.md, domain rules).
REPORT_CAVEATS = (
    "In bed comes from the shin's posture and the patient's button: time awake in bed counts, "
    "so the PLM index may be lower than a polysomnography's per hour of sleep.",
    "Detection has been checked against simulated nights, not yet against polysomnography in "
    "patients.",
    "The 4-h, 90 % coverage and gap thresholds of night quality, the 0.6 periodicity reading and "
    "the treatment-response rules are rlsmon's stated choices (docs/dashboard.md), not "
    "published cut-offs.",
)


def night_caveats(from_device: list[str]) -> list[str]:
    """The device's caveats, plus each standing caveat that the device did not already state."""
    text = " ".join(from_device).lower()
    topics = (("respirat",), ("per hour in bed", "hour in bed"))
    return list(from_device) + [caveat for caveat, words in zip(STANDING_CAVEATS, topics)
                                if not any(w in text for w in words)]


def install_filters(templates: Jinja2Templates, clinic_tz: tzinfo | None) -> None:
    """Register the formatting filters the templates use."""
    env = templates.env

    def localtime(iso: str | None) -> str:
        if not iso:
            return "never"
        # With the zone's abbreviation (CET, UTC): a tablet may be in another zone than the server.
        return datetime.fromisoformat(iso).astimezone(clinic_tz).strftime("%d %b %Y %H:%M %Z")

    def duration(seconds: float | None) -> str:
        if seconds is None:
            return "–"
        minutes = int(round(seconds / 60))
        return f"{minutes // 60} h {minutes % 60:02d} min"

    def percent(fraction: float | None) -> str:
        # A whole percent, but never "100 %" while anything is missing: then 99.9 %, so that
        # the coverage agrees with the gaps shown beside it.
        if fraction is None:
            return "–"
        shown = f"{100 * fraction:.0f}"
        if shown == "100" and fraction < 1:
            shown = f"{min(99.9, math.floor(1000 * fraction) / 10):.1f}"
        return f"{shown} %"

    def span(seconds: float) -> str:
        if seconds < 60:
            return f"{seconds:.0f} s"
        minutes = int(round(seconds / 60))
        return f"{minutes} min" if minutes < 60 else f"{minutes // 60} h {minutes % 60:02d} min"

    def inline_code(text: str | None) -> Markup:
        # The API's descriptions mark code with backticks, as Markdown does.
        parts = str(escape(text or "")).split("`")
        return Markup("".join(f"<code>{p}</code>" if i % 2 else p for i, p in enumerate(parts)))

    def number(value: float | None, digits: int = 1) -> str:
        return "–" if value is None else f"{value:.{digits}f}"

    def clock(minutes: float | None) -> str:
        # Minutes after midnight (a circular mean) as a wall-clock time.
        if minutes is None:
            return "–"
        total = int(round(minutes)) % 1440
        return f"{total // 60:02d}:{total % 60:02d}"

    env.filters.update(localtime=localtime, duration=duration, percent=percent, number=number,
                       span=span, inline_code=inline_code, clock=clock)


def _principal(request: Request) -> Principal:
    return request.state.principal


def _now_iso(request: Request) -> str:
    return state(request).now().isoformat()


# ---- login --------------------------------------------------------------------------------------

def _login_page(request: Request, error: str | None = None, status: int = 200,
                next_path: str = "/", username: str = "") -> Response:
    token = secrets.token_urlsafe(32)
    response = render(request, "login.html", {"csrf_token": token, "error": error,
                                               "next": safe_next(next_path), "principal": None,
                                               "username": username}, status)
    response.set_cookie(LOGIN_CSRF_COOKIE, token, httponly=True, samesite="strict", path="/login",
                        secure=cookie_secure(request))
    return response


@router.get("/login")
@public
def login_form(request: Request, next: str = "/") -> Response:
    """The login page (public)."""
    return _login_page(request, next_path=next)


def home(role: str) -> str:
    """Where a role starts: clinicians on the patients list, admins on the audit trail."""
    return "/" if role == CLINICIAN else "/admin/audit"


@router.post("/login")
@public
def login_submit(request: Request, username: str = Form(max_length=200),
                 password: str = Form(max_length=1000), next: str = Form("/"),
                 db: Database = Depends(get_db)) -> Response:
    """Check the password; on success set the session cookie and go where the user was heading.
    Failures are throttled (`auth.LoginPolicy`); an unknown name and a wrong password get the
    same answer."""
    web = state(request)
    result = auth.login(db, username, password, web.now(), client_address(request), web.policy)
    if result.retry_after_s is not None:
        # Not audited: refused attempts cost an attacker nothing, so each one must cost the
        # database nothing either. The failures that led here are in the trail.
        response = _login_page(request, f"Too many failed attempts. Try again in "
                                        f"{result.retry_after_s} s.", 429, next, username)
        response.headers["Retry-After"] = str(result.retry_after_s)
        return response
    if result.token is None:
        audit(request, db, "login.failure", target_kind="user", target=result.account)
        return _login_page(request, "Wrong username or password.", 401, next, username)
    request.state.principal = Principal(result.account or "", result.role or "")
    audit(request, db, "login.success", target_kind="user", target=result.account)
    target = safe_next(next)
    response = RedirectResponse(home(result.role or "") if target == "/" else target,
                                status_code=303)
    response.set_cookie(SESSION_COOKIE, result.token, httponly=True, samesite="strict",
                        secure=cookie_secure(request),
                        max_age=int(web.policy.session_ttl.total_seconds()))
    response.delete_cookie(LOGIN_CSRF_COOKIE, path="/login")
    return response


@router.post("/logout")
@allow(ADMIN, CLINICIAN)
def logout(request: Request, db: Database = Depends(get_db)) -> Response:
    """End the session."""
    auth.logout(db, request.cookies.get(SESSION_COOKIE, ""))
    audit(request, db, "logout", target_kind="user", target=_principal(request).username)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


# ---- patients -----------------------------------------------------------------------------------

@router.get("/", response_class=HTMLResponse)
@allow(CLINICIAN)
def patients(request: Request, q: str = Query("", max_length=100), flagged: bool = False,
             after: str | None = Query(None, pattern=DEVICE_ID_PATTERN, max_length=63),
             before: str | None = Query(None, pattern=DEVICE_ID_PATTERN, max_length=63),
             page: int = Query(1, ge=1, le=100_000), db: Database = Depends(get_db)) -> Response:
    """The patients list: last night per device, flags, devices not reporting, unassigned devices.

    Paged by key (the device after or before which a page starts, the list being ordered by
    pseudonym), so any page costs the same; ``page`` only numbers it for the reader."""
    today = state(request).today()
    found = queries.patient_page(db, today, search=q.strip(), flagged_only=flagged,
                                 limit=PAGE_SIZE, after=after, before=before)
    page = page if found.has_before else 1
    audit(request, db, "patients.list", detail=f"page={page}")
    return render(request, "patients.html", {
        "rows": found.rows, "total": found.total, "page": page,
        "pages": max(page, math.ceil(found.total / PAGE_SIZE)),
        "has_before": found.has_before, "has_after": found.has_after,
        "q": q, "flagged": flagged, "today": today,
        "quality": night_quality.of_nights(db, [(r.device_id, r.night) for r in found.rows if r.night]),
        "silent": queries.not_reporting(db, today, limit=SIDE_LIST_SIZE),
        "unassigned": queries.unassigned_devices(db, today, limit=SIDE_LIST_SIZE),
        "overview": queries.overview(db, today),
        "missed_alert": queries.MISSED_NIGHTS_ALERT,
    })


@router.post("/devices/{device_id}/assign")
@allow(CLINICIAN)
def assign(request: Request, device_id: str = DeviceId,
           pseudonym: str = Form(max_length=200), db: Database = Depends(get_db)) -> Response:
    """Assign a device to a patient pseudonym (a new pseudonym creates the patient)."""
    try:
        patient_id = assign_device(db, device_id, pseudonym, _now_iso(request))
    except LookupError as e:
        raise HTTPException(404, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    audit(request, db, "device.assign", target_kind="device", target=device_id,
          patient=pseudonym.strip())
    return RedirectResponse(f"/patients/{patient_id}", status_code=303)


# ---- one night ----------------------------------------------------------------------------------

def _night_or_404(request: Request, db: Database, device_id: str, night: date,
                  action: str) -> dict[str, Any]:
    """The night, or 404; audited as ``action`` when found."""
    found = queries.night_summary(db, device_id, night.isoformat())
    if found is None:
        raise HTTPException(404, f"No night {night} for device {device_id}.")
    audit(request, db, action, target_kind="night", target=f"{device_id}/{night}",
          patient=found["pseudonym"])
    return found


@router.get("/devices/{device_id}/nights/{night}", response_class=HTMLResponse)
@allow(CLINICIAN)
def night_page(request: Request, night: date, device_id: str = DeviceId,
               db: Database = Depends(get_db)) -> Response:
    """One night: timeline, hourly counts, IMI histogram, the LM table and the caveats."""
    found = _night_or_404(request, db, device_id, night, "night.view")
    summary = found["summary"]
    previous, following = queries.neighbour_nights(db, device_id, night.isoformat())
    caveats = night_caveats(summary.get("caveats", []))
    start = charts.recording_start(summary)
    lms = [dict(lm, clock=(start + timedelta(seconds=lm["onset_s"])).strftime("%H:%M:%S")
                if start else None) for lm in summary["lm_events"]]
    return render(request, "night.html", {
        "device_id": device_id, "night": night, "s": summary, "found": found, "lms": lms,
        # An LM's leg (docs/summary.md) is shown when the night names any; none is "–".
        "legs_known": any("leg" in lm for lm in lms),
        "charts": charts.night_charts(summary), "caveats": caveats,
        "recording_start": start, "previous": previous, "next": following,
        "coverage": (summary["coverage"]["recorded_s"] / summary["duration_s"]
                     if summary["duration_s"] else None),
        "gaps_s": sum(g["end_s"] - g["start_s"] for g in summary["coverage"]["gaps"]),
        "quality": quality.of_summary(summary),
    })


@router.get("/devices/{device_id}/nights/{night}/annotations.edf")
@allow(CLINICIAN)
def night_edf(request: Request, night: date, device_id: str = DeviceId,
              db: Database = Depends(get_db)) -> Response:
    """The night's LMs, PLMs, series, in-bed time and markers as an EDF+ annotation file."""
    found = _night_or_404(request, db, device_id, night, "export.edf")
    summary = found["summary"]
    start = charts.recording_start(summary)
    if start is None:  # no wall clock at all: EDF+ still needs a start; use the night's evening
        start = datetime.combine(night, datetime.min.time())
    body = edf.write_annotations_edf(
        edf.night_annotations(summary), start.replace(tzinfo=None), summary["duration_s"],
        patient_code=found["pseudonym"] or device_id, equipment=f"rlsmon_{device_id}")
    return Response(body, media_type="application/octet-stream",
                    headers=attachment(device_id, f"{night}.edf"))


@router.get("/devices/{device_id}/nights/{night}/summary.json")
@allow(CLINICIAN)
def night_json(request: Request, night: date, device_id: str = DeviceId,
               db: Database = Depends(get_db)) -> Response:
    """The night's summary exactly as the device sent it."""
    found = _night_or_404(request, db, device_id, night, "export.summary_json")
    return Response(found["summary_json"], media_type="application/json",
                    headers=attachment(device_id, f"{night}.json"))


# ---- trend --------------------------------------------------------------------------------------

def _patient_or_404(request: Request, db: Database, patient_id: int,
                    action: str | None) -> dict[str, Any]:
    """The patient, or 404; audited as ``action`` (when given) when found."""
    found = queries.patient(db, patient_id)
    if found is None:
        raise HTTPException(404, f"No patient {patient_id}.")
    if action is not None:
        audit(request, db, action, target_kind="patient", target=found["pseudonym"],
              patient=found["pseudonym"])
    return found


@router.get("/patients/{patient_id}", response_class=HTMLResponse)
@allow(CLINICIAN)
def trend_page(request: Request, patient_id: int = Path(ge=1, le=2**62),
               db: Database = Depends(get_db)) -> Response:
    """A patient's verdict over the eligible nights, then the trend: PLMI per eligible night, the
    7-night rolling mean and spread, medications and notes, the treatment response, and every
    night with its quality."""
    found = _patient_or_404(request, db, patient_id, "patient.view")
    nights, notes, chart_args = load_trend(db, patient_id)
    svg = charts.trend_svg(*chart_args)
    meds = medications.of_patient(db, patient_id)
    regular = regularity.load(db, patient_id, state(request).today())
    sits = patient_sits(db, patient_id)  # the evening tests (docs/sit.md), beside the nights
    # The last nights summarised are the eligible ones, as on the chart (issue 12).
    recent = [n for n in nights if n["quality"].label == quality.ELIGIBLE][-7:]
    return render(request, "trend.html", {
        "patient": found, "nights": list(reversed(nights)), "notes": notes, "chart": svg,
        "verdict": verdict(nights), "medications": meds,
        "classes": medications.CLASS_NAMES, "changes": response.changes(meds, nights),
        "prompts": response.augmentation_prompts(meds, nights),
        "regularity": regular, "bed_chart": _bed_chart(regular),
        "recent_mean": (sum(n["plm_index"] for n in recent) / len(recent)) if recent else None,
        "recent_range": ((min(n["plm_index"] for n in recent), max(n["plm_index"] for n in recent))
                         if recent else None),
        "recent_count": len(recent), "today": state(request).today(),
        "sits": list(reversed(sits)), "sit_chart": charts.sit_svg(
            [(date.fromisoformat(t["evening"]), t["plm_index"], t["taken"]) for t in sits]),
    })


@router.post("/patients/{patient_id}/notes")
@allow(CLINICIAN)
def add_note(request: Request, patient_id: int = Path(ge=1, le=2**62),
             on: date = Form(), text: str = Form(max_length=1000),
             db: Database = Depends(get_db)) -> Response:
    """Add a treatment note, drawn on the trend chart from its date."""
    found = _patient_or_404(request, db, patient_id, None)
    try:
        queries.add_note(db, patient_id, on, text, _principal(request).username,
                         _now_iso(request))
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    # The entry says a note was added and its date, never its text.
    audit(request, db, "note.add", target_kind="patient", target=found["pseudonym"],
          patient=found["pseudonym"], detail=f"date={on}")
    return RedirectResponse(f"/patients/{patient_id}#notes", status_code=303)


def _bed_chart(regular: regularity.Regularity) -> str:
    """The chart of lights off and rising (excluded nights are not drawn), with the 28-night
    circular means when there are enough nights for them."""
    month = regular.spreads[-1]
    means = None
    if month.off_mean_min is not None:
        # Circular means are minutes after midnight; the chart counts from noon.
        means = ((month.off_mean_min - 720) % 1440, (month.rise_mean_min - 720) % 1440)
    return charts.bedtimes_svg(
        [(t.night, t.off_min, t.rise_min, t.label == quality.ELIGIBLE) for t in regular.times
         if t.label != quality.EXCLUDED], means)


@router.post("/patients/{patient_id}/medications")
@allow(CLINICIAN)
def add_medication(request: Request, patient_id: int = Path(ge=1, le=2**62),
                   drug: str = Form(max_length=200), dose: str = Form(max_length=200),
                   drug_class: str = Form(max_length=40), started: date = Form(),
                   stopped: date | None = Form(None), db: Database = Depends(get_db)) -> Response:
    """Record a medication (drug, dose, class, start and optional stop date)."""
    found = _patient_or_404(request, db, patient_id, None)
    try:
        medication_id = medications.add(
            db, patient_id, drug=drug, dose=dose, drug_class=drug_class, started=started,
            stopped=stopped, username=_principal(request).username, now_iso=_now_iso(request))
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    # Which entry and when, never the drug or dose (health data stays out of the trail).
    audit(request, db, "medication.add", target_kind="patient", target=found["pseudonym"],
          patient=found["pseudonym"], detail=f"id={medication_id} started={started}")
    return RedirectResponse(f"/patients/{patient_id}#medications", status_code=303)


@router.post("/patients/{patient_id}/medications/{medication_id}/stop")
@allow(CLINICIAN)
def stop_medication(request: Request, patient_id: int = Path(ge=1, le=2**62),
                    medication_id: int = Path(ge=1, le=2**62), on: date = Form(),
                    db: Database = Depends(get_db)) -> Response:
    """Set the stop date of a medication the patient still takes."""
    found = _patient_or_404(request, db, patient_id, None)
    try:
        medications.stop(db, patient_id, medication_id, on)
    except LookupError as e:
        raise HTTPException(404, str(e)) from None
    except ValueError as e:
        raise HTTPException(422, str(e)) from None
    audit(request, db, "medication.stop", target_kind="patient", target=found["pseudonym"],
          patient=found["pseudonym"], detail=f"id={medication_id} stopped={on}")
    return RedirectResponse(f"/patients/{patient_id}#medications", status_code=303)


def _csv(rows: list[dict[str, Any]], columns: list[str], filename: str) -> Response:
    """Rows as CSV; yes/no columns as 1/0 in every export (docs/dashboard.md), as SQLite stores
    them and as a spreadsheet sums them."""
    buf = io.StringIO()
    writer = csv.DictWriter(buf, columns, extrasaction="ignore", lineterminator="\n")
    writer.writeheader()
    writer.writerows({k: int(v) if isinstance(v, bool) else v for k, v in row.items()}
                     for row in rows)
    return Response(buf.getvalue(), media_type="text/csv; charset=utf-8",
                    headers=attachment(filename))


NIGHT_COLUMNS = ["night", "device_id", "plm_index", "lm_index", "lm_count", "plm_count",
                 "plm_series_count", "time_in_bed_s", "recorded_s", "periodicity_index", "severity",
                 "clinically_significant", "rules", "summary_id", "generated_at", "received_at"]
LM_COLUMNS = ["night", "device_id", "idx", "onset_s", "offset_s", "duration_s", "periodic", "clm",
              "bilateral", "series", "imi_s", "leg"]


# Each CSV export is an entry here: what it reads and its columns, in order.
CSV_EXPORTS = {
    "nights": (queries.patient_nights, NIGHT_COLUMNS),
    "lms": (queries.patient_lm_events, LM_COLUMNS),
    "sits": (patient_sits, SIT_COLUMNS),
}


@router.get("/patients/{patient_id}/{kind}.csv")
@allow(CLINICIAN)
def patient_csv(request: Request, kind: Literal["nights", "lms", "sits"],
                patient_id: int = Path(ge=1, le=2**62), db: Database = Depends(get_db)) -> Response:
    """The patient's nights (one row per night), LMs (one row per LM) or evening tests (one row
    per SIT) as CSV."""
    found = _patient_or_404(request, db, patient_id, f"export.{kind}_csv")
    read, columns = CSV_EXPORTS[kind]
    return _csv(read(db, patient_id), columns, f"{found['pseudonym']}_{kind}.csv")


@router.get("/patients/{patient_id}/report.pdf")
@allow(CLINICIAN)
def report_pdf(request: Request, patient_id: int = Path(ge=1, le=2**62),
               nights: int = Query(report.DEFAULT_NIGHTS, ge=1, le=366),
               last: date | None = Query(None), db: Database = Depends(get_db)) -> Response:
    """The one-page clinic report (A4 PDF) of the ``nights`` nights ending on ``last`` (default:
    the patient's latest night)."""
    found = _patient_or_404(request, db, patient_id, None)
    if last is None:
        first, end = report.span_of(db, patient_id, state(request).today(), nights)
    else:
        first, end = last - timedelta(days=nights - 1), last
    audit(request, db, "export.report_pdf", target_kind="patient", target=found["pseudonym"],
          patient=found["pseudonym"], detail=f"nights={first}..{end}")
    body = report.render_pdf(report.gather(
        db, found, first, end, state(request).now().astimezone(state(request).clinic_tz),
        STANDING_CAVEATS + REPORT_CAVEATS))
    return Response(body, media_type="application/pdf",
                    headers=attachment(found["pseudonym"], f"report_{first}_{end}.pdf"))


@router.get("/patients/{patient_id}/fhir.json")
@allow(CLINICIAN)
def patient_fhir(request: Request, patient_id: int = Path(ge=1, le=2**62),
                 db: Database = Depends(get_db)) -> Response:
    """The patient's nights and evening tests as a FHIR R4 Bundle of Observations
    (docs/dashboard.md)."""
    found = _patient_or_404(request, db, patient_id, "export.fhir")
    body = fhir.bundle(found, fhir.patient_summaries(db, patient_id), state(request).now(),
                       [s.result for s in sit_results(db, found["devices"])])
    return Response(json.dumps(body, ensure_ascii=False), media_type="application/fhir+json",
                    headers=attachment(found["pseudonym"], "fhir.json"))


@router.get("/patients/{patient_id}/nights.json")
@allow(CLINICIAN)
def nights_json(request: Request, patient_id: int = Path(ge=1, le=2**62),
                db: Database = Depends(get_db)) -> Response:
    """The patient, their notes and medications, and the headline figures of every night, as
    JSON."""
    found = _patient_or_404(request, db, patient_id, "export.nights_json")
    body = {"patient": found, "notes": queries.notes(db, patient_id),
            "medications": [m.as_dict() for m in medications.of_patient(db, patient_id)],
            "nights": queries.patient_nights(db, patient_id), "sits": patient_sits(db, patient_id)}
    return Response(json.dumps(body, indent=1), media_type="application/json",
                    headers=attachment(found["pseudonym"], "nights.json"))


# ---- API tokens and docs ------------------------------------------------------------------------

def _tokens_page(request: Request, db: Database, status: int = 200, **context: Any) -> Response:
    """Admins see and revoke every token; a clinician only their own."""
    me = _principal(request)
    listed = auth.api_tokens(db, owner=None if me.role == ADMIN else me.username)
    return render(request, "tokens.html", {
        "tokens": listed, "new_token": None, "error": None, "now": _now_iso(request),
        "default_days": state(request).policy.token_ttl.days, **context}, status)


@router.get("/tokens", response_class=HTMLResponse)
@allow(ADMIN, CLINICIAN)
def tokens_page(request: Request, db: Database = Depends(get_db)) -> Response:
    """API tokens for the clinic's own systems."""
    return _tokens_page(request, db)


@router.post("/tokens", response_class=HTMLResponse)
@allow(ADMIN, CLINICIAN)
def tokens_create(request: Request, name: str = Form(max_length=200),
                  days: int = Form(0, ge=0, le=10_000), db: Database = Depends(get_db)) -> Response:
    """Create a token owned by the user, with their role, for ``days`` (default: the policy's);
    it is shown once, on this response only."""
    me = _principal(request)
    ttl = timedelta(days=days) if days else state(request).policy.token_ttl
    try:
        token = auth.create_api_token(db, name, me.username, me.role, state(request).now(), ttl)
    except auth.AuthError as e:
        return _tokens_page(request, db, 422, error=str(e))
    audit(request, db, "token.create", target_kind="token", target=name.strip(),
          detail=f"role={me.role} days={ttl.days}")
    return _tokens_page(request, db, 201, new_token=token, new_name=name.strip())


@router.post("/tokens/revoke")
@allow(ADMIN, CLINICIAN)
def tokens_revoke(request: Request, name: str = Form(max_length=200),
                  db: Database = Depends(get_db)) -> Response:
    """Revoke a token by name: an admin any token, a clinician their own."""
    me = _principal(request)
    if auth.revoke_api_token(db, name, owner=None if me.role == ADMIN else me.username):
        audit(request, db, "token.revoke", target_kind="token", target=name)
    return RedirectResponse("/tokens", status_code=303)


@router.get("/docs", response_class=HTMLResponse)
@allow(ADMIN, CLINICIAN)
def api_docs(request: Request) -> Response:
    """The JSON API, documented from its own OpenAPI schema (served locally, no CDN)."""
    spec = request.app.openapi()
    operations = [{"method": method.upper(), "path": path, **op}
                  for path, item in spec["paths"].items() for method, op in item.items()]
    return render(request, "docs.html", {"spec": spec, "operations": operations})
