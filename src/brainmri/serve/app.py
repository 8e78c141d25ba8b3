"""The FastAPI application of ``brainmri serve``: the page, ``POST /predict``, ``GET /model``, ``GET /health``.

:func:`create_app` takes a loaded model (the model object is injected, so
any predictor with the bundle's interface can be served) and its
:class:`~brainmri.serve.settings.ServeSettings`. Every refusal is JSON
``{"detail": "<one line>"}`` with a 4xx status documented in the OpenAPI
spec (``/openapi.json``), or 503 with ``Retry-After`` when the queue is
full; the request body is read with a size cap before it is parsed, so an
oversized upload is refused without being held in memory.

The page (``static/``) is plain HTML, CSS and JavaScript; its
Content-Security-Policy allows resources from this server only. FastAPI's
interactive docs are switched off because they load scripts from a CDN.

References
----------
FastAPI, https://fastapi.tiangolo.com ; RFC 9110 (HTTP semantics: 413, 415,
503 and Retry-After); RFC 6750 (bearer tokens).
"""

# No ``from __future__ import annotations`` here: FastAPI reads the endpoints' annotations at run time.

import logging
import secrets
from collections.abc import Callable
from contextlib import asynccontextmanager
from pathlib import Path

from brainmri.errors import ConfigError
from brainmri.version import __version__

try:
    import fastapi
    import uvicorn
    from fastapi import Depends, Query, Request
    from fastapi.exceptions import RequestValidationError
    from fastapi.responses import FileResponse, JSONResponse
    from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
    from fastapi.staticfiles import StaticFiles
    from starlette.datastructures import UploadFile
    from starlette.exceptions import HTTPException
    from starlette.formparsers import MultiPartException, MultiPartParser
    from starlette.requests import ClientDisconnect
except ImportError as exc:
    raise ConfigError(
        f"brainmri serve needs FastAPI, uvicorn and python-multipart ({exc}); pip install 'brainmri[serve]'"
    ) from None

from brainmri.serve import schemas
from brainmri.serve.inference import Inference
from brainmri.serve.limits import BodyTimeout, HeaderDeadlineProtocol, UploadBudget, read_body
from brainmri.serve.settings import ServeSettings
from brainmri.serve.uploads import RequestError, check_upload

logger = logging.getLogger(__name__)

STATIC = Path(__file__).parent / "static"

#: The page may load and call this server only (no other host, no inline script).
CONTENT_SECURITY_POLICY = (
    "default-src 'self'; img-src 'self' data: blob:; script-src 'self'; style-src 'self'; "
    "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'none'"
)

DISCLAIMER = (
    "brainmri is a research tool, not a diagnostic device: its predictions and heatmaps must not be used "
    "for the diagnosis or treatment of any patient."
)


def create_app(model, settings: ServeSettings | None = None, *, explain=None) -> fastapi.FastAPI:
    """The web application serving ``model``.

    Parameters
    ----------
    model : object
        A loaded model with ``predict_proba``, ``classes_`` and
        ``manifest``, such as :func:`~brainmri.models.bundle.load_model`
        returns.
    settings : ServeSettings, optional
    explain : Bundle, optional
        The bundle heatmaps are computed with, when ``model`` is not one
        (see :class:`~brainmri.serve.inference.Inference`).

    Returns
    -------
    fastapi.FastAPI
        Its worker threads stop when the application shuts down.
    """
    settings = settings or ServeSettings()
    inference = Inference(
        model,
        explain=explain,
        workers=settings.workers,
        queue_size=settings.queue_size,
        max_pixels=settings.max_pixels,
        keep_uploads=settings.keep_uploads,
    )
    name = Path(str(getattr(model, "path", model.manifest["method"]["name"]))).name
    bearer = HTTPBearer(auto_error=False, description="the token given to brainmri serve --token")

    def check_token(credentials: HTTPAuthorizationCredentials | None = Depends(bearer)) -> None:
        fix = "send the header 'Authorization: Bearer <token>' with the token given to brainmri serve --token"
        if credentials is None:
            raise RequestError(401, f"missing token: {fix}", {"WWW-Authenticate": "Bearer"})
        if not secrets.compare_digest(credentials.credentials.encode(), settings.token.encode()):
            raise RequestError(401, f"wrong token: {fix}", {"WWW-Authenticate": 'Bearer error="invalid_token"'})

    @asynccontextmanager
    async def lifespan(app):
        yield
        inference.close()

    app = fastapi.FastAPI(
        title="brainmri serve",
        version=__version__,
        lifespan=lifespan,
        docs_url=None,
        redoc_url=None,
        description=f"Predictions and heatmaps of one model bundle. {DISCLAIMER}",
    )
    secured = [Depends(check_token)] if settings.token else []
    refusals = {401: "missing or wrong token"} if settings.token else {}

    def responses(codes: dict | None = None) -> dict:
        return {
            code: {"model": schemas.Error, "description": text} for code, text in {**refusals, **(codes or {})}.items()
        }

    _add_error_handlers(app)
    _add_page(app)
    _add_info_routes(app, inference, settings, name=name, secured=secured, responses=responses)
    _add_predict_route(app, inference, settings, name=name, secured=secured, responses=responses)
    return app


def _add_error_handlers(app) -> None:
    """Every refusal as JSON ``{"detail": "<one line>"}`` with its status."""

    @app.exception_handler(RequestError)
    async def refused(request: Request, exc: RequestError):
        return JSONResponse({"detail": str(exc)}, status_code=exc.status, headers=exc.headers)

    @app.exception_handler(RequestValidationError)
    async def invalid(request: Request, exc: RequestValidationError):
        problems = "; ".join(f"{'.'.join(map(str, e['loc']))}: {e['msg']}" for e in exc.errors())
        return JSONResponse({"detail": f"invalid request ({problems})"}, status_code=422)

    @app.exception_handler(HTTPException)
    async def http_error(request: Request, exc: HTTPException):
        return JSONResponse({"detail": str(exc.detail)}, status_code=exc.status_code, headers=exc.headers)


def _add_page(app) -> None:
    """The page at ``/`` and its static files."""

    @app.get("/", include_in_schema=False)
    async def page():
        return FileResponse(
            STATIC / "index.html",
            headers={"Content-Security-Policy": CONTENT_SECURITY_POLICY, "X-Content-Type-Options": "nosniff"},
        )

    app.mount("/static", StaticFiles(directory=STATIC), name="static")


def _add_info_routes(
    app, inference: Inference, settings: ServeSettings, *, name: str, secured: list, responses: Callable
) -> None:
    """``GET /health`` and ``GET /model``."""
    manifest = inference.model.manifest

    @app.get(
        "/health",
        response_model=schemas.Health,
        dependencies=secured,
        responses=responses(),
        summary="whether the server is up, and how busy",
    )
    async def health():
        return {
            "status": "ok",
            "model": name,
            "version": inference.version,
            "busy": inference.pending,
            "capacity": inference.capacity,
        }

    @app.get(
        "/model",
        response_model=schemas.ModelInfo,
        dependencies=secured,
        responses=responses(),
        summary="the model: classes, method, preprocessing, validation metrics",
    )
    async def model_info():
        return {
            "name": name,
            "version": inference.version,
            "method": manifest["method"],
            "classes": inference.classes,
            "preprocess": manifest.get("preprocess"),
            "input_size": manifest.get("input_size"),
            "validation": manifest.get("validation"),
            "training_data": manifest.get("training_data"),
            "created": manifest.get("created"),
            "explanation": inference.explanation,
            "disclaimer": DISCLAIMER,
            "limits": {
                "max_upload_mb": settings.max_upload_mb,
                "max_pixels": settings.max_pixels,
                "max_files": settings.max_files,
            },
        }


def _add_predict_route(
    app, inference: Inference, settings: ServeSettings, *, name: str, secured: list, responses: Callable
) -> None:
    """``POST /predict``: its body read within the memory budget (:mod:`brainmri.serve.limits`), then predicted."""
    budget = UploadBudget(settings.max_pending_bytes)
    method = inference.model.manifest["method"]["name"]

    @app.post(
        "/predict",
        response_model=schemas.Predictions,
        dependencies=secured,
        summary="class probabilities (and heatmaps) of one or more images",
        description="Send the images as multipart/form-data, each in a field named `files`: PNG, JPEG, DICOM "
        "or a NIfTI slice (`.nii`, `.nii.gz`), recognised by content, not by name.",
        openapi_extra={
            "requestBody": {
                "required": True,
                "content": {
                    "multipart/form-data": {
                        "schema": {
                            "type": "object",
                            "required": ["files"],
                            "properties": {"files": {"type": "array", "items": {"type": "string", "format": "binary"}}},
                        }
                    }
                },
            }
        },
        responses=responses(PREDICT_REFUSALS),
    )
    async def predict(request: Request, heatmap: bool = Query(False, description="also return a heatmap overlay")):
        declared = request.headers.get("content-length", "")
        size = min(int(declared), settings.max_upload_bytes + 1) if declared.isdigit() else settings.max_upload_bytes
        if not budget.reserve(size):
            raise RequestError(
                503,
                f"the server holds {budget.held / 2**20:.0f} MiB of uploads already (--max-pending-mb "
                f"{settings.pending_mb:g}); retry shortly",
                {"Retry-After": "2"},
            )
        try:
            uploads = await _read_uploads(request, settings)
        finally:
            budget.release(size)
        rows = await inference.run(inference.predict, uploads, heatmap)
        return {
            "model": {"name": name, "method": method, "version": inference.version},
            "predictions": rows,
            "disclaimer": DISCLAIMER,
        }


#: What ``POST /predict`` answers instead of predictions, as its OpenAPI spec documents them.
PREDICT_REFUSALS = {
    400: "empty body, no file, an empty file, or a malformed multipart body",
    408: "the body stopped arriving, or took too long",
    413: "the body, the number of files or an image's pixel count is above the limit",
    415: "not multipart/form-data, or a file that is not PNG, JPEG, DICOM or NIfTI",
    422: "a corrupt image, a DICOM without pixel data, a volume, a colour image, or an invalid query parameter",
    503: "every worker is busy and the queue is full, or the uploads held in memory reach --max-pending-mb: retry "
    "after Retry-After seconds",
}


def run_server(app, settings: ServeSettings, *, quiet: bool = False) -> None:
    """Serve ``app`` with uvicorn at ``settings.host:settings.port`` until Ctrl-C or SIGTERM.

    uvicorn shuts down gracefully on either signal and then raises it again,
    so the command ends as every brainmri command does (exit 130 or 143);
    ``uvicorn.run`` would swallow it.
    """
    uvicorn.Server(server_config(app, settings, quiet=quiet)).run()


def server_config(app, settings: ServeSettings, *, quiet: bool = False, **overrides) -> uvicorn.Config:
    """uvicorn's configuration of ``app``: address, logs, and the limits of :mod:`brainmri.serve.limits`."""
    options = {
        "host": settings.host,
        "port": settings.port,
        "log_level": "warning" if quiet else "info",
        "timeout_graceful_shutdown": 5,
        "http": HeaderDeadlineProtocol,
        "timeout_keep_alive": 5,
        "limit_concurrency": settings.workers + settings.queue_size + 32,
    }
    return uvicorn.Config(app, **{**options, **overrides})


async def _read_uploads(request: Request, settings: ServeSettings) -> list:
    """The checked uploads of a ``POST /predict`` request (the body is read up to the size limit only)."""
    limit = settings.max_upload_bytes
    too_big = (
        f"request body above the limit of {settings.max_upload_mb:g} MiB; send fewer or smaller images, "
        "or start the server with a higher --max-upload-mb"
    )
    declared = request.headers.get("content-length", "")
    if declared.isdigit() and int(declared) > limit:
        raise RequestError(413, too_big)
    try:
        body = await read_body(request.stream(), limit)
    except BodyTimeout as exc:
        raise RequestError(408, f"{exc}; send the whole request without pausing") from None
    except ClientDisconnect:
        logger.info("a client disconnected before its upload was complete")
        raise RequestError(400, "the client disconnected before the upload was complete") from None
    if body is None:
        raise RequestError(413, too_big)
    if not body:
        raise RequestError(400, "empty body; send the images as multipart/form-data, each in a field named 'files'")
    content_type = request.headers.get("content-type", "")
    if content_type.split(";")[0].strip().lower() != "multipart/form-data":
        raise RequestError(
            415,
            f"Content-Type {content_type or 'missing'}: send the images as multipart/form-data, "
            "each in a field named 'files'",
        )

    async def stream():  # in slices of the body already read: no second whole copy of it
        view = memoryview(body)
        for start in range(0, len(view), 1 << 16):
            yield bytes(view[start : start + (1 << 16)])

    parser = MultiPartParser(request.headers, stream())  # its own limits (1000 files and fields) lie above ours
    try:
        form = await parser.parse()
    except MultiPartException as exc:
        raise RequestError(
            400, f"malformed multipart/form-data body ({exc}); send each image in a field named 'files'"
        ) from None
    try:
        files = [v for v in form.getlist("files") if isinstance(v, UploadFile)]
        if not files:
            raise RequestError(400, "no file in the field 'files'; send each image in a multipart field named 'files'")
        if len(files) > settings.max_files:
            raise RequestError(
                413,
                f"more than {settings.max_files} files in one request; send them in several "
                "requests, or start the server with a higher --max-files",
            )
        return [
            check_upload(
                f"files[{k}] ({f.filename!r})" if f.filename else f"files[{k}]",
                f.filename,
                await f.read(),
                max_pixels=settings.max_pixels,
            )
            for k, f in enumerate(files)
        ]
    finally:
        await form.close()
