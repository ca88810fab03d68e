"""The web app: the page, its static files, and the JSON API, as a Starlette ASGI app.

    GET  /              the page (static/index.html)
    GET  /static/...    its script and style sheet, from this package only
    GET  /api/model     the model: layers, parameters, history, test accuracy, classes
    POST /api/predict   an image file (multipart or the raw body) or a 28x28 JSON array;
                        answers the list `nnctl predict --json` prints for that file

Every failure is a 4xx (or, for a bug, a 500) with a JSON body {"error": "..."}, never a
traceback. Nothing is written to disk: uploads are read in memory.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

import anyio
import numpy as np
from starlette.applications import Starlette
from starlette.datastructures import UploadFile
from starlette.exceptions import HTTPException
from starlette.formparsers import MultiPartException, MultiPartParser
from starlette.middleware import Middleware
from starlette.middleware.trustedhost import TrustedHostMiddleware
from starlette.requests import Request
from starlette.responses import FileResponse, JSONResponse
from starlette.routing import Mount, Route
from starlette.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from nnctl.errors import UsageError
from nnctl.predict import Prediction
from nnctl.serve import model
from nnctl.serve.predictor import Predictor, pixel_array
from nnctl.weights import Checkpoint

STATIC = Path(__file__).parent / "static"
MAX_BODY = 10 * 1024 * 1024  # bytes; a phone photo is 2 to 8 MB
MAX_NAME = 200  # characters of an uploaded file's name kept in answers
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' blob: data:; "
                               "object-src 'none'; base-uri 'none'; frame-ancestors 'none'",
    "X-Content-Type-Options": "nosniff",
    "Referrer-Policy": "no-referrer",
    "Cache-Control": "no-store",
}
log = logging.getLogger("nnctl.serve")


class BodyLimit:
    """413 for a request body over `limit` bytes: at once from Content-Length, or as soon as
    a body sent without one (chunked) passes the limit while it is read."""

    def __init__(self, app: ASGIApp, limit: int):
        self.app, self.limit = app, limit

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        declared = dict(scope["headers"]).get(b"content-length", b"0")
        if not declared.isdigit() or int(declared) > self.limit:
            status, text = ((413, self._too_large()) if declared.isdigit()
                            else (400, "Content-Length is not a number"))
            await JSONResponse({"error": text}, status)(scope, receive, send)
            return
        received = 0

        async def limited() -> Message:
            nonlocal received
            message = await receive()
            received += len(message.get("body", b""))
            if received > self.limit:
                raise HTTPException(413, self._too_large())
            return message

        await self.app(scope, limited, send)

    def _too_large(self) -> str:
        megabytes = self.limit / (1024 * 1024)
        return f"the request body is larger than {megabytes:.3g} MB ({self.limit:,} bytes)"


class SecurityHeaders:
    """Adds HEADERS to every response: no scripts from elsewhere, no framing, no caching."""

    def __init__(self, app: ASGIApp):
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        async def with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                names = {name.lower() for name, _ in message.get("headers", [])}
                message["headers"] = list(message.get("headers", [])) + [
                    (k.lower().encode(), v.encode()) for k, v in HEADERS.items()
                    if k.lower().encode() not in names]
            await send(message)

        await self.app(scope, receive, with_headers)


def _flag(request: Request, name: str) -> bool:
    value = request.query_params.get(name, "0").lower()
    if value not in ("0", "1", "true", "false", "yes", "no", ""):
        raise HTTPException(400, f"?{name}= takes 1 or 0, not {value!r}")
    return value in ("1", "true", "yes", "")


async def _upload(request: Request, limit: int) -> tuple[bytes, str]:
    """The image's bytes and name: the file of a multipart form, or the raw body."""
    if request.headers.get("content-type", "").startswith("multipart/form-data"):
        parser = MultiPartParser(request.headers, request.stream(), max_files=1, max_fields=8,
                                 max_part_size=limit)
        parser.spool_max_size = limit + 1  # files stay in memory: the body is at most `limit`
        try:
            form = await parser.parse()
        except MultiPartException as error:
            raise HTTPException(400, f"the form cannot be read ({error.message})") from None
        try:
            files = [value for value in form.values() if isinstance(value, UploadFile)]
            if not files:
                raise HTTPException(400, "the form has no file: send the image as a file "
                                         "field, e.g. curl -F file=@digit.png")
            return await files[0].read(), (files[0].filename or "upload")[:MAX_NAME]
        finally:
            await form.close()
    data = await request.body()
    if not data:
        raise HTTPException(400, "the request has no image: send an image file or a 28x28 "
                                 "array as JSON")
    return data, "upload"


def create_app(checkpoint: Checkpoint, name: str = "weights.npz", *, workers: int = 2,
               max_body: int = MAX_BODY, allowed_hosts: list[str] | None = None) -> Starlette:
    """The app for one checkpoint, loaded once; predictions run in up to `workers` threads.

    `allowed_hosts` (the Host headers answered) keeps a page on another site from reaching a
    server on 127.0.0.1 through DNS rebinding; None answers any."""
    predictor = Predictor(checkpoint, workers)
    limiter = anyio.CapacityLimiter(workers)
    summary = model.summary(checkpoint, name)

    async def page(request: Request) -> FileResponse:
        return FileResponse(STATIC / "index.html", media_type="text/html")

    async def model_info(request: Request) -> JSONResponse:
        return JSONResponse(summary)

    async def predict(request: Request) -> JSONResponse:
        raw, pixels = _flag(request, "raw"), _flag(request, "pixels")
        if request.headers.get("content-type", "").startswith("application/json"):
            body = await request.body()
            result = await anyio.to_thread.run_sync(_from_json, predictor, body,
                                                    limiter=limiter)
        else:
            data, filename = await _upload(request, max_body)
            result = await anyio.to_thread.run_sync(predictor.image, data, filename, raw,
                                                    limiter=limiter)
        return JSONResponse([_answer(result, pixels)])

    routes = [
        Route("/", page),
        Route("/api/model", model_info),
        Route("/api/predict", predict, methods=["POST"]),
        Mount("/static", StaticFiles(directory=STATIC), name="static"),
    ]
    middleware = [Middleware(SecurityHeaders), Middleware(BodyLimit, limit=max_body)]
    if allowed_hosts is not None:
        middleware.insert(0, Middleware(TrustedHostMiddleware, allowed_hosts=allowed_hosts))
    handlers = {HTTPException: _http_error, UsageError: _usage_error, Exception: _server_error}
    return Starlette(routes=routes, middleware=middleware, exception_handlers=handlers)


def _from_json(predictor: Predictor, body: bytes) -> Prediction:
    """The prediction for a JSON array, parsed in the worker thread: 10 MB of JSON takes a
    while, and the other requests go on meanwhile."""
    try:
        values = json.loads(body)
    except (json.JSONDecodeError, UnicodeDecodeError) as error:
        raise HTTPException(400, f"the body is not valid JSON ({error})") from None
    except RecursionError:
        raise HTTPException(400, "the body's JSON is nested too deeply") from None
    return predictor.array(pixel_array(values, predictor.image_shape))


def _answer(result: Prediction, pixels: bool) -> dict:
    """`nnctl predict --json`'s object, with the warning `nnctl predict` prints beside it,
    and the inputs the network saw, row by row, when asked."""
    answer = result.as_dict()
    if result.warning:
        answer["warning"] = result.warning
    if pixels:
        answer["pixels"] = [round(float(v), 4) for v in np.ravel(result.pixels)]
    return answer


async def _http_error(request: Request, error: HTTPException) -> JSONResponse:
    text = {404: f"no such page: {request.url.path}",
            405: f"{request.method} is not allowed on {request.url.path}"}.get(
        error.status_code, error.detail)
    return JSONResponse({"error": text}, error.status_code, error.headers)


async def _usage_error(request: Request, error: UsageError) -> JSONResponse:
    """A well-formed request whose image or array cannot be read as a digit."""
    return JSONResponse({"error": str(error)}, 422)


async def _server_error(request: Request, error: Exception) -> JSONResponse:
    log.exception("error while answering %s %s", request.method, request.url.path)
    return JSONResponse({"error": "internal error (the server's log has the details)"}, 500)
