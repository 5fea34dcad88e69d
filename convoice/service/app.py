"""The voice bank web service: FastAPI routes over a release, the synthesisers and the checks.

``create_app(settings, release)`` builds the app; ``convoice serve`` runs it
with uvicorn. The page (``static/``) uses the same API as everyone else.
OpenAPI docs at ``/docs``.
"""

from __future__ import annotations

import contextlib
import hmac
import ipaddress
from collections.abc import AsyncIterator
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

from fastapi import FastAPI, File, Form, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse, Response
from fastapi.staticfiles import StaticFiles
from pydantic import BaseModel, Field

from convoice.models import voicebank as vb
from convoice.service import speak as sp
from convoice.service.bank import (
    Bank,
    Refusal,
    check_reference,
    clip_audio,
    decode_upload,
    keep_upload,
    load_bank,
    voice_audio,
)
from convoice.service.images import data_uri, mel_png
from convoice.service.state import Jobs, RateLimiter, Results, audio_of

if TYPE_CHECKING:
    from convoice.config import Settings

STATIC = Path(__file__).parent / "static"
MEDIA = {"wav": "audio/wav", "mp3": "audio/mpeg"}
KEEP_MEANING = (
    "Keep my recording: it is stored on this server (not in any dataset) so that the operator"
    " can look into problems; ask the operator to delete it. Unticked, it is deleted as soon as"
    " the request is answered."
)


class BatchItem(BaseModel):
    text: str
    voice: str
    language: str = ""
    mode: str = "clone"


class BatchRequest(BaseModel):
    items: list[BatchItem] = Field(min_length=1)
    format: str = "wav"
    measure: bool = True  # score each result (similarity, Whisper WER)


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def voice_json(bank: Bank, voice: vb.BankVoice) -> dict[str, Any]:
    out = voice.public()
    out["clips"] = [f"/v1/clips/{c}.flac" for c in voice.sample_clips]
    out["mel"] = f"/v1/voices/{voice.voice_id}/mel.png"
    return out


def refusal_response(err: Refusal) -> JSONResponse:
    return JSONResponse(
        {"error": err.code, "detail": str(err), **err.extra}, status_code=err.status
    )


def create_app(settings: Settings, release: str | None = None, bank: Bank | None = None) -> FastAPI:
    """The service over ``release`` (default: the latest) of the store in ``settings``."""
    bank = bank or load_bank(settings, release)

    @contextlib.asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        yield
        _app.state.jobs.shutdown()

    app = FastAPI(
        lifespan=lifespan,
        title="Con Voice voice bank",
        description="Hear the dataset's voices, find a voice, speak text in it. Which synthesiser"
        " spoke is always said; a matched or default voice is never called a clone.",
        version="1",
    )
    app.state.bank, app.state.settings = bank, settings
    app.state.results = Results(settings.service.result_ttl_s)
    app.state.jobs = Jobs(settings.service.result_ttl_s)
    app.state.limiter = RateLimiter(settings.service.requests_per_minute)
    app.state.mels = {}
    app.add_exception_handler(Refusal, lambda _r, e: refusal_response(e))
    _guards(app, settings)
    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    _page_routes(app)
    _voice_routes(app)
    _speech_routes(app)
    _batch_routes(app)
    return app


def _guards(app: FastAPI, settings: Settings) -> None:
    """Token (when set), upload size and requests per minute, each refusal with a message."""
    import os

    token = settings.service.token or os.environ.get("CONVOICE_SERVICE_TOKEN", "")

    @app.middleware("http")
    async def guard(request: Request, call_next: Any) -> Response:
        refused = _token_refusal(request, token)
        if refused is None:
            refused = _post_refusal(app, request, settings)
        if refused is not None:
            return refused
        response: Response = await call_next(request)
        if token and request.query_params.get("token") == token:
            response.set_cookie("convoice_token", token, httponly=True, samesite="strict")
        return response


def _token_refusal(request: Request, token: str) -> JSONResponse | None:
    """401 when a token is set and the request does not carry it (``/healthz`` is open)."""
    if not token or request.url.path == "/healthz":
        return None
    given = request.headers.get("authorization", "").removeprefix("Bearer ").strip()
    given = given or request.cookies.get("convoice_token") or request.query_params.get("token", "")
    if hmac.compare_digest(given.encode(), token.encode()):
        return None
    return JSONResponse(
        {
            "error": "unauthorised",
            "detail": "a valid token is required (Authorization: Bearer ..., or ?token=...)",
        },
        401,
    )


def _post_refusal(app: FastAPI, request: Request, settings: Settings) -> JSONResponse | None:
    """413 for a POST over the upload limit, 429 for a client over its requests a minute."""
    if request.method != "POST":
        return None
    limit = int(settings.service.max_upload_mb * 1_000_000) + 200_000  # form overhead
    length = int(request.headers.get("content-length") or 0)
    if length > limit:
        mb = settings.service.max_upload_mb
        return refusal_response(
            Refusal(
                413,
                "too_large",
                f"the request is {length / 1e6:.1f} MB; the upload limit is {mb:g} MB",
            )
        )
    client = request.client.host if request.client else "?"
    wait = app.state.limiter.allow(client)
    if not wait:
        return None
    per = settings.service.requests_per_minute
    refusal = Refusal(
        429,
        "rate_limited",
        f"more than {per} requests a minute from {client}; try again in {wait:.0f} s",
    )
    limited = refusal_response(refusal)
    limited.headers["Retry-After"] = str(int(wait) + 1)
    return limited


def _page_routes(app: FastAPI) -> None:
    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    @app.get("/healthz", include_in_schema=False)
    def health() -> dict[str, str]:
        return {"status": "ok", "release": app.state.bank.release}


def _voice_routes(app: FastAPI) -> None:
    bank: Bank = app.state.bank
    settings: Settings = app.state.settings

    @app.get("/v1/voices", summary="The voice bank: dataset speakers and shipped voices")
    def voices(language: str = "", q: str = "", kind: str = "") -> dict[str, Any]:
        found = vb.search(list(bank.voices.values()), language, q, kind)
        return {
            "release": bank.release,
            "keep_meaning": KEEP_MEANING,
            "modes": list(sp.MODES),
            "voices": [voice_json(bank, v) for v in found],
        }

    @app.get("/v1/voices/{voice_id}", summary="One bank voice")
    def voice(voice_id: str) -> dict[str, Any]:
        return voice_json(bank, bank.get(voice_id))

    @app.get("/v1/voices/{voice_id}/mel.png", summary="Mel spectrogram of a bank voice")
    def voice_mel(voice_id: str) -> Response:
        bank.get(voice_id)
        if voice_id not in app.state.mels:
            app.state.mels[voice_id] = mel_png(voice_audio(bank, voice_id), 16000)
        return Response(app.state.mels[voice_id], media_type="image/png")

    @app.get("/v1/clips/{clip_id}.flac", summary="A sample clip of a dataset voice")
    def clip(clip_id: str) -> Response:
        data, _ = clip_audio(bank, clip_id)
        return Response(data, media_type="audio/flac")

    @app.post("/v1/voices/match", summary="Upload a voice; get the nearest bank voices")
    def match(
        file: Annotated[UploadFile, File(description="wav, mp3, m4a, ogg/opus or webm; 3-60 s")],
        keep: Annotated[bool, Form(description=KEEP_MEANING)] = False,
        k: Annotated[int, Form(ge=1, le=20)] = 5,
    ) -> dict[str, Any]:
        data = file.file.read()
        reference = check_reference(decode_upload(data, file.filename or "", settings), settings)
        kept = str(keep_upload(data, file.filename or "", settings)) if keep else None
        del data  # nothing of the upload outlives the request unless kept
        ranked = vb.nearest(reference.embedding, list(bank.voices.values()), k)
        return {
            "seconds": round(reference.seconds, 2),
            "speech_seconds": round(reference.speech_seconds, 2),
            "kept": kept is not None,
            "mel": data_uri(mel_png(reference.samples, 16000)),
            "nearest": [{**voice_json(bank, v), "similarity": round(s, 4)} for v, s in ranked],
        }


def _speech_routes(app: FastAPI) -> None:
    bank: Bank = app.state.bank
    settings: Settings = app.state.settings
    results: Results = app.state.results

    @app.post("/v1/speech", summary="Speak a text in a bank voice or an uploaded voice")
    def speech(
        text: Annotated[str, Form()],
        voice: Annotated[
            str, Form(description="A bank voice id; empty with an uploaded file")
        ] = "",
        language: Annotated[str, Form(description="en, de, ...; empty: guessed")] = "",
        mode: Annotated[str, Form(description="clone, match or nearest")] = "clone",
        format: Annotated[str, Form(description="wav, mp3 or json")] = "wav",
        keep: Annotated[bool, Form(description=KEEP_MEANING)] = False,
        file: Annotated[UploadFile | None, File(description="A reference recording")] = None,
    ) -> Response:
        if format not in ("wav", "mp3", "json"):
            raise Refusal(422, "bad_format", f"format {format!r}: use wav, mp3 or json")
        sp.check_text(text, settings)
        target = _target(bank, settings, voice, file, keep)
        result = sp.speak(bank, target, text, language, mode, settings)
        key = results.add(result)
        if format == "json":
            return JSONResponse(result_json(key, result))
        headers = {
            "X-Convoice-Synthesiser": result.speech.synthesiser,
            "X-Convoice-Kind": result.speech.kind,
            "X-Convoice-Result": key,
            "Content-Disposition": f'attachment; filename="speech-{key}.{format}"',
        }
        return Response(audio_of(result, format), media_type=MEDIA[format], headers=headers)

    @app.get("/v1/results/{key}.{fmt}", summary="A result's audio (wav or mp3)")
    def result_audio(key: str, fmt: str, download: bool = Query(False)) -> Response:
        result = results.get(key)
        if result is None or fmt not in MEDIA:
            raise Refusal(404, "unknown_result", f"no result {key}.{fmt} (results expire)")
        headers = (
            {"Content-Disposition": f'attachment; filename="speech-{key}.{fmt}"'}
            if download
            else {}
        )
        return Response(audio_of(result, fmt), media_type=MEDIA[fmt], headers=headers)


def _target(
    bank: Bank, settings: Settings, voice: str, file: UploadFile | None, keep: bool
) -> sp.Target:
    """Whose voice to speak in: the uploaded recording when there is one, else a bank voice."""
    if file is not None and file.filename:
        data = file.file.read()
        reference = check_reference(decode_upload(data, file.filename, settings), settings)
        if keep:
            keep_upload(data, file.filename, settings)
        del data
        return sp.upload_target(reference)
    if voice:
        return sp.bank_target(bank, voice)
    raise Refusal(422, "no_voice", "name a bank voice or upload a recording")


def _check_batch(body: BatchRequest, bank: Bank, settings: Settings) -> None:
    """Refuse a batch with an unknown format, too many items, a bad text or an unknown voice."""
    if body.format not in MEDIA:
        raise Refusal(422, "bad_format", f"format {body.format!r}: use wav or mp3")
    if len(body.items) > settings.service.max_batch_items:
        raise Refusal(
            422,
            "too_many_items",
            f"{len(body.items)} items; at most {settings.service.max_batch_items} per batch",
        )
    for item in body.items:
        sp.check_text(item.text, settings)
        bank.get(item.voice)


def _batch_routes(app: FastAPI) -> None:
    bank: Bank = app.state.bank
    settings: Settings = app.state.settings

    @app.post("/v1/speech/batch", status_code=202, summary="Speak many texts as a background job")
    def batch(body: BatchRequest) -> dict[str, Any]:
        _check_batch(body, bank, settings)

        def run(item: dict[str, Any]) -> sp.SpeechResult:
            target = sp.bank_target(bank, item["voice"])
            return sp.speak(
                bank,
                target,
                item["text"],
                item["language"],
                item["mode"],
                settings,
                measure=body.measure,
            )

        job = app.state.jobs.submit([i.model_dump() for i in body.items], body.format, run)
        return job.public()

    @app.get("/v1/jobs/{job_id}", summary="A batch job's progress")
    def job(job_id: str) -> dict[str, Any]:
        found = app.state.jobs.get(job_id)
        if found is None:
            raise Refusal(404, "unknown_job", f"no job {job_id} (jobs expire)")
        return found.public()

    @app.get("/v1/jobs/{job_id}/result.zip", summary="A finished batch job's audio as a zip")
    def job_zip(job_id: str) -> Response:
        found = app.state.jobs.get(job_id)
        if found is None:
            raise Refusal(404, "unknown_job", f"no job {job_id} (jobs expire)")
        if found.status != "done":
            raise Refusal(409, "not_done", f"job {job_id} is {found.status} ({found.done} done)")
        return Response(
            found.archive,
            media_type="application/zip",
            headers={"Content-Disposition": f'attachment; filename="{job_id}.zip"'},
        )


def result_json(key: str, result: sp.SpeechResult) -> dict[str, Any]:
    """A result as the page shows it: what spoke, the scores, audio links, both mel pictures."""
    speech = result.speech
    return {
        "id": key,
        **result.public(),
        "audio": {fmt: f"/v1/results/{key}.{fmt}" for fmt in MEDIA},
        "mel": {
            "reference": data_uri(mel_png(result.reference_samples, 16000)),
            "result": data_uri(mel_png(speech.samples, speech.rate)),
        },
    }
