"""The web service of ``adbench serve``: one fitted model behind FastAPI.

Endpoints: ``POST /predict`` (multipart field ``image``; ``?format=png`` returns the
overlay PNG), ``GET /health``, ``GET /model``, ``GET /`` (the page, page.html: no CDN).

Bad input never reaches the model and never gives a 500: a body over the cap is 413
(counted as it arrives, so a lying or missing Content-Length does not help); an empty,
non-image or corrupt upload is 415/422 with a one-line ``detail``; an image whose header
declares more pixels than ``IADBENCH_MAX_PIXELS`` (a decompression bomb) is 413 before
any pixel is decoded. With a token, ``/predict`` and ``/model`` need ``Authorization:
Bearer <token>`` (401 without it); ``/`` and ``/health`` stay open so the page loads
and probes work.

Concurrency: decoding runs in the request; scoring goes through one queue to a single
worker thread that takes up to ``batch_size`` waiting requests (waiting at most
``batch_wait_ms`` for more after the first) and scores them as one batch, so under load
throughput approaches batch throughput while the runtime's own threads stay bounded.
Each request waits on its own future: results are matched by position in the batch.
A full queue answers 503.
"""


import asyncio
import base64
import math
import secrets
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from iadbench.visual.png import Z_RLE

PAGE = Path(__file__).with_name("page.html")
DEFAULT_MAX_BODY = 20 * 1024 * 1024
# The overlay PNG at the upload's size: zlib level 1 with run-length matching encodes a
# 900 x 900 bottle overlay in ~42 ms where the default level 6 took 189 ms (the largest
# cost of a request; 582 kB instead of 598 kB).
OVERLAY_PNG = {"compress_level": 1, "strategy": Z_RLE}
DRAIN_FACTOR = 8  # bodies up to 8x the cap are read to the end before the 413


class UploadError(Exception):
    def __init__(self, status: int, detail: str):
        super().__init__(detail)
        self.status, self.detail = status, detail


def decode_upload(data: bytes, name: str = "upload") -> np.ndarray:
    """Upload bytes -> uint8 RGB (H, W, 3) at native size, decoded by
    ``iadbench.images.decode_image_bytes`` (the rules a file gets, so scores equal
    ``adbench predict``'s); its errors become the status a client should see."""
    from iadbench.errors import ImageError
    from iadbench.images import ImageTooLarge, NotAnImage, decode_image_bytes

    try:
        return decode_image_bytes(data, name)
    except ImageTooLarge as exc:
        raise UploadError(413, str(exc)) from None
    except NotAnImage as exc:
        raise UploadError(415, str(exc)) from None
    except ImageError as exc:
        raise UploadError(422, str(exc)) from None


@dataclass
class _Job:
    image: np.ndarray
    future: asyncio.Future


class MicroBatcher:
    """One worker thread scoring queued images in batches (see the module doc)."""

    def __init__(self, model, batch_size: int = 8, batch_wait_ms: float = 5.0, queue_size: int = 256):
        self.model, self.batch_size, self.wait = model, max(1, int(batch_size)), max(0.0, batch_wait_ms) / 1000.0
        self.queue: asyncio.Queue[_Job] | None = None
        self.queue_size = queue_size
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iadbench-score")
        self.task: asyncio.Task | None = None
        self.batches: list[int] = []  # sizes of the batches scored (for tests and /health)

    async def start(self) -> None:
        self.queue = asyncio.Queue(self.queue_size)
        self.task = asyncio.create_task(self._loop())

    async def stop(self) -> None:
        if self.task is not None:
            self.task.cancel()
            try:
                await self.task
            except asyncio.CancelledError:
                pass
        self.pool.shutdown(wait=True)

    async def score(self, image: np.ndarray):
        assert self.queue is not None
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Job(image, fut))
        except asyncio.QueueFull:
            raise UploadError(503, "server busy: scoring queue full, retry later") from None
        return await fut

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        assert self.queue is not None
        while True:
            batch = [await self.queue.get()]
            deadline = loop.time() + self.wait
            while len(batch) < self.batch_size:
                remaining = deadline - loop.time()
                if remaining <= 0:
                    if self.queue.empty():
                        break
                    batch.append(self.queue.get_nowait())
                    continue
                try:
                    batch.append(await asyncio.wait_for(self.queue.get(), remaining))
                except TimeoutError:
                    break
            self.batches.append(len(batch))
            try:
                results = await loop.run_in_executor(self.pool, self.model.predict, [j.image for j in batch], len(batch))
            except Exception as exc:  # noqa: BLE001 - handed to each waiting request
                for job in batch:
                    if not job.future.done():
                        job.future.set_exception(exc)
                continue
            for job, result in zip(batch, results):
                if not job.future.done():
                    job.future.set_result(result)


class _BodyLimit:
    """ASGI middleware: 413 once a request body passes ``limit`` bytes (declared or streamed)."""

    def __init__(self, app, limit: int):
        self.app, self.limit = app, int(limit)

    async def __call__(self, scope, receive, send):
        if scope["type"] != "http":
            return await self.app(scope, receive, send)
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] == "http.disconnect":
                return None
            chunk = message.get("body", b"")
            size += len(chunk)
            more = message.get("more_body", False)
            if size > self.limit:
                # Read the rest and drop it (up to DRAIN_FACTOR x the cap): a client still
                # sending would otherwise see a reset instead of the 413.
                while more and size <= DRAIN_FACTOR * self.limit:
                    message = await receive()
                    if message["type"] == "http.disconnect":
                        return None
                    size += len(message.get("body", b""))
                    more = message.get("more_body", False)
                return await _reject(send, 413, f"request body over the {self.limit} byte limit")
            chunks.append(chunk)
        body = b"".join(chunks)
        sent = False

        async def replay():
            nonlocal sent
            if not sent:
                sent = True
                return {"type": "http.request", "body": body, "more_body": False}
            return await receive()

        return await self.app(scope, replay, send)


async def _reject(send, status: int, detail: str) -> None:
    import json

    body = json.dumps({"detail": detail}).encode()
    await send({"type": "http.response.start", "status": status,
                "headers": [(b"content-type", b"application/json"), (b"content-length", str(len(body)).encode()),
                            (b"connection", b"close")]})
    await send({"type": "http.response.body", "body": body})


def create_app(
    model,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    batch_size: int = 8,
    batch_wait_ms: float = 5.0,
):
    """The FastAPI app serving ``model`` (iadbench.model.Model: a model folder with its
    runtime, as ``open_model`` gives it)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from iadbench.images import max_pixels
    from iadbench.visual import overlay, png_bytes

    max_pixels()  # a malformed IADBENCH_MAX_PIXELS fails here, at start, not per request
    batcher = MicroBatcher(model, batch_size, batch_wait_ms)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        yield
        await batcher.stop()

    app = FastAPI(title="iadbench", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher = batcher

    def authorised(request: Request) -> bool:
        if not token:
            return True
        got = request.headers.get("authorization", "")
        return got.startswith("Bearer ") and secrets.compare_digest(got[7:].encode(), token.encode())

    def error(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    @app.get("/health")
    async def health():
        return {"status": "ok", "runtime": model.runtime_name, "batches": len(batcher.batches)}

    @app.get("/model")
    async def model_info(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        return {
            "detector": model.detector.name,
            "params": model.detector.params,
            "threshold": model.threshold if math.isfinite(model.threshold) else None,
            "threshold_rule": model.threshold_rule,
            "input_size": list(model.input_size),
            "runtime": model.runtime_name,
            "runtime_detail": getattr(model.runtime, "detail", None),
            "token_required": bool(token),
        }

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    @app.post("/predict")
    async def predict(request: Request, format: str = "json"):  # noqa: A002 - the query name
        start = time.perf_counter()
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        if format not in ("json", "png"):
            return error(422, f"format must be json or png, got {format!r}")
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            return error(415, "send the image as multipart/form-data in the field 'image'")
        try:
            form = await request.form(max_files=1, max_fields=4)
        except Exception as exc:  # noqa: BLE001 - a malformed multipart body
            return error(422, f"malformed multipart body ({type(exc).__name__})")
        try:
            upload = form.get("image")
            if upload is None or isinstance(upload, str):
                return error(422, "no file in the multipart field 'image'")
            data = await upload.read()
            name = upload.filename or "upload"
            image = await asyncio.to_thread(decode_upload, data, name)  # off the event loop
            result = await batcher.score(image)
        except UploadError as exc:
            return error(exc.status, exc.detail)
        finally:
            await form.close()
        png = await asyncio.to_thread(
            lambda: png_bytes(overlay(image, result.map, model.display_range, model.pixel_threshold), **OVERLAY_PNG))
        ms = (time.perf_counter() - start) * 1000.0
        if format == "png":
            return Response(png, media_type="image/png", headers={"X-Score": repr(result.score), "X-Ms": f"{ms:.1f}"})
        has_threshold = math.isfinite(model.threshold)
        return {
            "score": result.score,
            "verdict": ("defective" if result.anomalous else "good") if has_threshold else None,
            "threshold": model.threshold if has_threshold else None,
            "ms": ms,
            "map_png": base64.b64encode(png).decode("ascii"),
        }

    if max_body:
        app.add_middleware(_BodyLimit, limit=max_body)
    return app
