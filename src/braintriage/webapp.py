"""The clinic app: a web page and a REST API, served by `braintriage serve` (FastAPI on uvicorn).

Everything is local: the page, its script and styles, and the API documentation's assets (fastapi-offline)
come from this package, never from a CDN. Uploaded scans stay in memory: they are never written to disk or
to a log, and the app logs nothing about them.

  GET  /                 the page
  POST /api/v1/predict   multipart field `files` (one or many); `?heatmap=true` adds heat maps
  GET  /api/v1/model     the model's metadata
  GET  /healthz          liveness
  GET  /docs             OpenAPI documentation
"""

from __future__ import annotations

import asyncio
import base64
import io
import time
import zlib
from datetime import datetime, timezone
from pathlib import Path
from typing import Annotated

import numpy as np
from fastapi import File, HTTPException, Query, Request, UploadFile
from fastapi.responses import FileResponse, JSONResponse
from fastapi.staticfiles import StaticFiles
from fastapi_offline import FastAPIOffline
from PIL import Image
from pydantic import BaseModel, Field
from starlette.formparsers import MultiPartParser

from braintriage import __version__, verdicts
from braintriage.inference import DECODED, Prediction, Predictor, native_view
from braintriage.scans import items_from_uploads

STATIC = Path(__file__).parent / "web"
DEFAULT_MAX_UPLOAD_MB = 50.0
MAX_PENDING_PREDICTIONS = 4  # requests admitted at once (one runs, the rest wait); more are answered 503
TIME_BUDGET_SECONDS = 120.0  # a request's scans not started by then are answered "not analysed", not run
BODY_READ_TIMEOUT = 30.0  # seconds an upload may go without sending a byte before it is answered 408
MAX_CONNECTIONS = 64  # open connections and requests at once; more are answered 503 by the server itself
ITEMS_PER_TURN = 4  # scans summarised together; each takes the model one batch of slices at a time


def time_budget() -> float:
    return TIME_BUDGET_SECONDS


class Admission:
    """ASGI middleware: at most `limit` prediction requests are admitted at once; another is answered 503 with
    Retry-After before its body is read, so queued uploads cannot pile up in memory."""

    def __init__(self, app, limit: int = MAX_PENDING_PREDICTIONS):
        self.app, self.limit, self.pending = app, limit, 0

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http" or scope.get("path") != "/api/v1/predict" or scope.get("method") != "POST":
            return await self.app(scope, receive, send)
        if self.pending >= self.limit:
            response = JSONResponse({"detail": "the server is busy with other scans; try again shortly"},
                                    status_code=503, headers={"Retry-After": "5"})
            return await response(scope, receive, send)
        self.pending += 1
        try:
            await self.app(scope, receive, send)
        finally:
            self.pending -= 1


class UploadTooLarge(HTTPException):
    def __init__(self, limit: int):
        super().__init__(413, f"upload larger than the limit of {limit / 1e6:.0f} MB")


class SlowUpload(HTTPException):
    def __init__(self, seconds: float):
        super().__init__(408, f"the upload stalled (nothing received for {seconds:.0f} s)")


class UploadLimit:
    """ASGI middleware: answers 413 for a request body over `max_bytes`, from its Content-Length header
    when it has one, else as soon as the streamed body passes the limit: never reading it all; and 408 for a
    body that stalls for `timeout` seconds (a slow client cannot hold a request open)."""

    def __init__(self, app, max_bytes: int, timeout: float = BODY_READ_TIMEOUT):
        self.app, self.max_bytes, self.timeout = app, max_bytes, timeout

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        length = dict(scope["headers"]).get(b"content-length")
        if length is not None and length.isdigit() and int(length) > self.max_bytes:
            response = JSONResponse({"detail": UploadTooLarge(self.max_bytes).detail}, status_code=413)
            return await response(scope, receive, send)
        received = 0

        async def limited_receive():
            nonlocal received
            try:
                message = await asyncio.wait_for(receive(), self.timeout)
            except asyncio.TimeoutError:
                raise SlowUpload(self.timeout) from None  # an HTTPException: FastAPI answers 408
            if message["type"] == "http.request":
                received += len(message.get("body", b""))
                if received > self.max_bytes:
                    raise UploadTooLarge(self.max_bytes)  # an HTTPException: FastAPI answers 413
            return message

        await self.app(scope, limited_receive, send)


# The page loads its own script, styles and data: URLs (heat maps) and nothing else, and may not be framed
# (clickjacking). The API documentation page starts Swagger UI with an inline script, so it alone may run one.
PAGE_POLICY = ("default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data: blob:; "
               "connect-src 'self'; object-src 'none'; base-uri 'none'; form-action 'self'; frame-ancestors 'none'")
DOCS_POLICY = PAGE_POLICY.replace("script-src 'self'", "script-src 'self' 'unsafe-inline'").replace(
    "style-src 'self'", "style-src 'self' 'unsafe-inline'")


class SecurityHeaders:
    """ASGI middleware: security headers on every response (a strict Content-Security-Policy, nosniff, no
    framing, no referrer), `Cache-Control: no-store` on API answers (they describe patients' scans), and, with
    `allowed_hosts`, a Host allow-list: a request naming any other host is refused 400, which stops DNS
    rebinding from reaching a server on a clinic laptop through a web page."""

    def __init__(self, app, allowed_hosts: list[str] | None = None):
        self.app = app
        self.allowed = {h.lower() for h in allowed_hosts} if allowed_hosts else None

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        path = scope.get("path", "")
        if self.allowed is not None:
            host = dict(scope["headers"]).get(b"host", b"").decode("latin-1").lower()
            name = host.rsplit(":", 1)[0] if not host.endswith("]") else host
            if name not in self.allowed:
                response = JSONResponse({"detail": "unknown Host header"}, status_code=400)
                return await response(scope, receive, self._with_headers(send, path))
        await self.app(scope, receive, self._with_headers(send, path))

    @staticmethod
    def _with_headers(send, path: str):
        policy = DOCS_POLICY if path.startswith(("/docs", "/redoc")) else PAGE_POLICY
        extra = [(b"content-security-policy", policy.encode()), (b"x-content-type-options", b"nosniff"),
                 (b"x-frame-options", b"DENY"), (b"referrer-policy", b"no-referrer")]
        if path.startswith("/api/"):
            extra.append((b"cache-control", b"no-store"))

        async def send_with_headers(message):
            if message["type"] == "http.response.start":
                message["headers"] = [*message.get("headers", []), *extra]
            await send(message)

        return send_with_headers


def default_allowed_hosts(host: str) -> list[str]:
    """The bound address and the names of this computer's loopback; a server bound to every address (0.0.0.0)
    still answers only to these unless more are named (--allowed-host)."""
    return sorted({host, "localhost", "127.0.0.1", "[::1]"} - {"0.0.0.0", "::"})


def described(text: str, default=None):
    """A response field with its description in the API documentation (/docs)."""
    return Field(default, description=text)


class FileResult(BaseModel):
    filename: str = described("The file (or, for a study, its first file) as uploaded.")
    verdict: str = described("What to act on: tumor_suspected (refer for specialist review), uncertain (inside the "
                             "band around the threshold: a human reads it), cannot_assess (not like the brain MRI "
                             "the model learned from: a human reads it; the score is then secondary), "
                             "no_tumor_detected (does not rule out a tumor), or error (the file could not be "
                             "read).", verdicts.ERROR)
    suspicion: str | None = described("The score in words: high (at or above the band), moderate (inside it), low.")
    probability_text: str | None = described('The score for people: "37%", never 0% or 100% ("< 1%", "> 99%").')
    tumor_probability: float | None = described("P(tumor) from the model, 0-1.")
    prediction: str | None = described("tumor or no_tumor: the plain call at `threshold` (act on `verdict`).")
    threshold: float = described("The model's decision threshold on P(tumor).", 0.5)
    type: str | None = described('The tumor type to show: only for tumor_suspected, and only when the model\'s type '
                                 'display rule is met; else "type uncertain". Null: no type is shown.')
    predicted_type: str | None = described("Raw most likely class, for model audits (may be wrong, or no_tumor).")
    type_probabilities: dict[str, float] | None = described("Raw class probabilities, for model audits.")
    heatmap: str | None = described("With ?heatmap=true: PNG (base64), the class activation map of the evidence "
                                    "for a tumor, zero outside the head; none when the input was not assessed.")
    image: str | None = described("With ?heatmap=true: PNG (base64), the model's view of the scan (its input "
                                  "size), which `heatmap` overlays.")
    study: str | None = described("DICOM series, multi-frame file or NIfTI volume: the study's name (a hash of "
                                  "its Study Instance UID unless the server shows identifiers).")
    slices: int = described("Slices in the study (1 for an image).", 1)
    top_slices: list[str] = described("A study's most suspicious slices, most suspicious first; `image` and "
                                      "`heatmap` show the first.", [])
    slice_probabilities: list[float | None] | None = described("A study's P(tumor) per slice, in slice order "
                                                               "(null: that slice could not be read).")
    warning: str | None = described("Why the input is not like brain MRI (or which slices of a study were left "
                                    "out).")
    reliable: bool = described("False when the score rests only on inputs unlike brain MRI (verdict "
                               "cannot_assess).", True)
    error: str | None = described("Why the file, or some slices of a study, could not be read.")
    description: str | None = described("What a study is: its DICOM Series Description, or how a volume was "
                                        "sliced. For the screen only.")
    patient: dict[str, str] | None = described("Patient name and ID from DICOM, only when the server was started "
                                               "with --show-identifiers. For the screen only: never exported.")
    shown_slice: str | None = described("A study: the label of the slice `image` shows.")
    slice_labels: list[str] | None = described("A study: every slice's label, in slice order.")
    native_image: str | None = described("With ?heatmap=true&views=true: PNG (base64), the shown slice at its own "
                                         "resolution (at most 1024 pixels a side), for an enlarged view.")
    slice_images: list[str | None] | None = described("With ?heatmap=true&views=true, a study: PNG (base64) of "
                                                      "every slice as the model saw it, in slice order (null: "
                                                      "unreadable).")


class PredictResponse(BaseModel):
    model: str = described("The model: network and the first 12 hex digits of the model file's SHA-256.")
    analysed_at: str = described("Time of the analysis, UTC, ISO 8601.")
    uncertain_band: tuple[float, float] = described("[low, high): below low no_tumor_detected, from high "
                                                    "tumor_suspected, between them uncertain.")
    results: list[FileResult] = described("One entry per image or study, in upload order.")


def binary_file_fields(schema: dict) -> dict:
    """OpenAPI 3.1 writes an uploaded file as `contentMediaType`; the bundled Swagger UI shows a file picker
    only for `format: binary`. Both are set, so /docs lets a user try the API with real files."""
    if isinstance(schema, dict):
        if schema.get("contentMediaType") == "application/octet-stream":
            schema["format"] = "binary"
        for value in schema.values():
            binary_file_fields(value)
    elif isinstance(schema, list):
        for value in schema:
            binary_file_fields(value)
    return schema


def png_base64(picture: np.ndarray | Image.Image, **png_options) -> str:
    """A PNG, base64, of a grey array (or an image). The fastest zlib level: the bytes go to a browser on this
    computer or its network, and the default level made encoding cost 2.5 times the model's own work on a batch
    (heat map, view, scan). A grey array goes as a palette image whose palette is the grey ramp, so each pixel's
    byte is its grey level and decoders read the same values: Pillow tries no PNG row filters on palette images,
    and with zlib's run-length strategy a 160-pixel scan encodes in 0.26 ms instead of 0.88, its PNG about a
    quarter larger (session 30, ad hoc)."""
    if isinstance(picture, np.ndarray):
        if picture.ndim != 2 or picture.dtype != np.uint8:
            raise ValueError(f"a grey uint8 picture is (H, W), not {picture.dtype} {picture.shape}")
        grey = Image.frombytes("P", (picture.shape[1], picture.shape[0]), np.ascontiguousarray(picture).tobytes())
        grey.putpalette(GREY_PALETTE, rawmode="RGB")
        picture, png_options = grey, {"compress_type": zlib.Z_RLE, **png_options}
    buf = io.BytesIO()
    picture.save(buf, format="PNG", compress_level=1, **png_options)
    return base64.b64encode(buf.getvalue()).decode()


GREY_PALETTE = np.repeat(np.arange(256, dtype=np.uint8), 3).tobytes()  # level k is grey k: (k, k, k)


def heatmap_rgba(cam: np.ndarray) -> np.ndarray:
    """Colour a map in [0, 1] blue-green-yellow-red (the classic 'jet' ramp; the page's legend shows it), with
    opacity rising with the evidence, so the scan shows through where the model found none. The page scales
    the whole overlay with its opacity control."""
    ramp = [np.clip(1.5 - np.abs(4 * cam - centre), 0, 1) for centre in (3, 2, 1)]  # red, green, blue
    alpha = np.clip((cam - 0.15) * 1.5, 0, 1)  # the weakest evidence stays clear of the anatomy
    return (np.stack([*ramp, alpha], axis=-1) * 255).round().astype(np.uint8)


HEATMAP_PALETTE = heatmap_rgba(np.linspace(0, 1, 256))  # the ramp at 256 levels of evidence, RGBA


def heatmap_png_base64(cam: np.ndarray) -> str:
    """A heat map as a palette PNG, base64: each pixel's evidence at one of 256 levels, coloured by
    HEATMAP_PALETTE (`heatmap_rgba` of that level; each channel within 2 of 255 of the map coloured pixel by
    pixel). One byte a pixel instead of four: encoding took 0.2 ms instead of 1.1 for a 160-pixel map, a quarter
    of what a heat map added to a request's cost, and the PNG is smaller."""
    levels = (np.clip(cam, 0, 1) * 255).round().astype(np.uint8)
    image = Image.frombytes("P", (levels.shape[1], levels.shape[0]), levels.tobytes())
    image.putpalette(HEATMAP_PALETTE[:, :3].tobytes(), rawmode="RGB")
    return png_base64(image, transparency=HEATMAP_PALETTE[:, 3].tobytes())


def to_result(p: Prediction, predictor: Predictor, views: bool = False) -> FileResult:
    scored = p.tumor_probability is not None
    assessed = p.verdict not in (verdicts.CANNOT_ASSESS, verdicts.ERROR)  # no heat map for what was not assessed
    # The enlarged view decodes the shown slice again, at its own resolution: only when it is asked for.
    native = native_view(p.shown_source) if views and p.shown_source is not None else None
    return FileResult(
        filename=p.path, verdict=p.verdict, tumor_probability=p.tumor_probability, prediction=p.prediction,
        suspicion=p.suspicion,
        probability_text=verdicts.probability_text(p.tumor_probability) if scored else None,
        threshold=predictor.threshold, type=p.shown_type,
        predicted_type=p.predicted_type, type_probabilities=p.type_probabilities, error=p.error,
        study=p.study, slices=p.slices, top_slices=p.top_slices, slice_probabilities=p.slice_probabilities,
        warning=p.warning, reliable=p.reliable,
        heatmap=heatmap_png_base64(p.heatmap) if p.heatmap is not None and assessed else None,
        description=p.description, patient=p.identifiers, shown_slice=p.shown_slice, slice_labels=p.slice_labels,
        native_image=png_base64(native) if native is not None else None,
        slice_images=([png_base64(a) if a is not None else None for a in p.slice_images]
                      if views and p.slice_images else None),
        image=png_base64(p.image) if p.image is not None else None,
    )


async def read_uploads(files: list[UploadFile]) -> list[tuple[str, bytes]]:
    """(name, bytes) of each upload, read once: its spooled copy is closed as soon as it is read."""
    uploads = []
    for i, f in enumerate(files):
        uploads.append((f.filename or f"file{i + 1}", await f.read()))
        await f.close()
    return uploads


class ModelTurns:
    """The app's one model, taken in turns: ITEMS_PER_TURN scans at a time, one batch of slices per turn at the
    lock, so that other requests get turns between (decoding needs none) and a 1,000-slice study lets a single
    scan through between its batches."""

    def __init__(self, predictor: Predictor):
        self.predictor = predictor
        self.lock = asyncio.Lock()  # one batch at a time through the model; the CPU is the limit anyway

    async def score(self, request: Request, items: list, heatmap: bool, deadline: float
                    ) -> list[Prediction] | None:
        """One Prediction per item, in order; None when the client has gone."""
        predictions = []
        for start in range(0, len(items), ITEMS_PER_TURN):
            scored = await self._score_chunk(request, items[start:start + ITEMS_PER_TURN], heatmap, deadline)
            if scored is None:
                return None
            predictions += scored
        return predictions

    async def _score_chunk(self, request: Request, chunk: list, heatmap: bool, deadline: float
                           ) -> list[Prediction] | None:
        """A few scans through the model; None when the client has gone. Scans not finished by `deadline` are
        answered "not analysed"."""
        late = [Prediction(path=it.path, study=it.study, error=f"not analysed: the request ran past its "
                           f"{TIME_BUDGET_SECONDS:.0f} s budget; send this scan again") for it in chunk]
        if time.monotonic() > deadline:
            return late
        if sum(len(it.slices) for it in chunk) <= self.predictor.batch_size:
            async with self.lock:  # one batch in all: one turn, one thread hop (most requests are this)
                return await asyncio.to_thread(self.predictor.predict_items, chunk, heatmap)
        steps, step = self.predictor.predict_in_steps(chunk, heatmap), None
        while not isinstance(step, list) and time.monotonic() <= deadline:
            if await request.is_disconnected():
                return None
            if step == DECODED:  # the next step runs the model
                async with self.lock:
                    step = await asyncio.to_thread(next, steps)
            else:
                step = await asyncio.to_thread(next, steps)
        return step if isinstance(step, list) else late


def create_app(model_path: str | Path | None = None, max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB,
               allowed_hosts: list[str] | None = None, max_pending: int = MAX_PENDING_PREDICTIONS,
               show_identifiers: bool = False, body_timeout: float = BODY_READ_TIMEOUT):
    predictor = Predictor(model_path)
    max_bytes = int(max_upload_mb * 1e6)
    # Starlette spools multipart parts over 1 MB to a temporary file; scans must stay in memory, and no
    # accepted part can exceed the upload limit, so the spool threshold is raised to it.
    MultiPartParser.spool_max_size = max_bytes + 1
    turns = ModelTurns(predictor)

    app = FastAPIOffline(
        title="braintriage", version=__version__,
        description="Flags brain MRI slices that show a tumor, for specialist review. "
                    "Decision support only, never a diagnosis.")
    app.add_middleware(UploadLimit, max_bytes=max_bytes, timeout=body_timeout)
    app.add_middleware(Admission, limit=max_pending)
    app.add_middleware(SecurityHeaders, allowed_hosts=allowed_hosts)  # outermost: on every answer, 413s too

    @app.get("/healthz", tags=["service"])
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/api/v1/model", tags=["model"])
    def model_metadata() -> dict:
        """The model's metadata: architecture, input, classes, threshold, training data, validation metrics."""
        return {k: v for k, v in predictor.metadata.items() if k != "history"}

    @app.post("/api/v1/predict", response_model=PredictResponse, tags=["model"],
              responses={413: {"description": "Upload over the size limit"},
                         422: {"description": "No file could be read as an image; each entry says why"}})
    async def predict(request: Request, files: Annotated[list[UploadFile], File(description="One or many scans")],
                      heatmap: Annotated[bool, Query(description="Add heat maps (base64 PNG)")] = False,
                      views: Annotated[bool, Query(description="With heatmap: add the scan at its own resolution and "
                                                   "a study's slices (base64 PNG), for an enlarged view")] = False):
        """Score scans: images (JPEG, PNG, BMP, TIFF), DICOM files (the files of one series, sent together,
        make one study) and NIfTI volumes. Each image or study gets its own entry; one that cannot be read
        gets an `error` there while the rest are answered. When nothing could be read the answer is 422.
        Busy (other requests waiting): 503 with Retry-After."""
        deadline = time.monotonic() + time_budget()
        uploads = await read_uploads(files)
        # Studies keep their hashed names (they go into exports); patient identifiers only to the screen.
        items = await asyncio.to_thread(items_from_uploads, uploads, False, None, show_identifiers)
        predictions = await turns.score(request, items, heatmap, deadline)
        if predictions is None:
            return JSONResponse({"detail": "client disconnected"}, status_code=499)  # nobody reads it
        analysed_at = datetime.now(timezone.utc).isoformat(timespec="seconds")
        # Encoding the pictures (and decoding enlarged views) is CPU work: off the event loop, like the model.
        results = await asyncio.to_thread(lambda: [to_result(p, predictor, views) for p in predictions])
        body = PredictResponse(model=predictor.model_id, analysed_at=analysed_at, uncertain_band=predictor.band,
                               results=results)
        status = 422 if all(p.tumor_probability is None for p in predictions) else 200
        return JSONResponse(body.model_dump(), status_code=status)

    app.mount("/static", StaticFiles(directory=STATIC), name="static")
    generated_openapi = app.openapi
    app.openapi = lambda: binary_file_fields(generated_openapi())  # file pickers in /docs

    @app.get("/", include_in_schema=False)
    def index() -> FileResponse:
        return FileResponse(STATIC / "index.html")

    return app


def serve(host: str = "127.0.0.1", port: int = 8000, model_path: str | Path | None = None,
          max_upload_mb: float = DEFAULT_MAX_UPLOAD_MB, allowed_hosts: list[str] | None = None,
          show_identifiers: bool = False) -> None:
    import uvicorn

    hosts = default_allowed_hosts(host) + list(allowed_hosts or [])
    # Idle keep-alive connections close after 5 s; a stalled body gets 408 (UploadLimit); at most MAX_CONNECTIONS
    # connections and requests at once, so slow clients cannot take unbounded memory (uvicorn has no timeout
    # for a client that never finishes its headers: those count against MAX_CONNECTIONS until they close).
    uvicorn.run(create_app(model_path, max_upload_mb, hosts, show_identifiers=show_identifiers), host=host,
                port=port, timeout_keep_alive=5, limit_concurrency=MAX_CONNECTIONS)
