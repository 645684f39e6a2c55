"""The web service of ``adbench serve``: one fitted model behind FastAPI.

Endpoints: ``POST /predict`` (multipart field ``image``; ``?format=png`` returns the
overlay PNG), ``POST /feedback`` (an operator's "false alarm" / "missed defect"),
``POST /reload``, ``GET /health``, ``GET /model``, ``GET /metrics`` (Prometheus),
``GET /`` (the page, page.html: no CDN).

Bad input never reaches the model and never gives a 500: a body over the cap is 413
(counted as it arrives, so a lying or missing Content-Length does not help); an empty,
non-image or corrupt upload is 415/422 with a one-line ``detail``; an image whose header
declares more pixels than ``IADBENCH_MAX_PIXELS`` (a decompression bomb) is 413 before
any pixel is decoded. With a token, ``/predict``, ``/feedback``, ``/reload`` and
``/model`` need ``Authorization: Bearer <token>`` (401 without it); ``/``, ``/health``
and ``/metrics`` stay open so the page loads and probes and scrapers work (they show
counts, versions and score distributions, no image and no model parameter; a scraper
holding the token could also write feedback and trigger reloads).

Concurrency: decoding runs in the request; scoring goes through one queue to a single
worker thread that takes up to ``batch_size`` waiting requests (waiting at most
``batch_wait_ms`` for more after the first) and scores them as one batch, so under load
throughput approaches batch throughput while the runtime's own threads stay bounded.
Each request waits on its own future: results are matched by position in the batch.
A full queue answers 503.

Versions (iadbench.line.reload): a request takes the served version once, at its start,
and its job carries that model through the queue; a batch holding jobs of two versions
(a reload happened while they waited) is scored as two batches, each by its own model.
Every answer names the version that scored it (``model_version``).

Feedback: ``/predict`` answers a ``result_id``; the server keeps the upload's bytes with
its score, threshold and version for ``result_ttl_s`` (bounded in count and bytes), so
the page's buttons send only ``{"result_id", "label"}`` and the stored entry holds the
server's own score for exactly the bytes it scored, nothing a client asserts. An upload
it no longer holds is sent again as multipart (``image``, ``label``) and scored afresh.
"""

import asyncio
import base64
import math
import secrets
import time
from collections import OrderedDict, deque
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from iadbench.jsonio import finite_or_none
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
    model: Any


class MicroBatcher:
    """One worker thread scoring queued images in batches (see the module doc)."""

    def __init__(self, model, batch_size: int = 8, batch_wait_ms: float = 5.0, queue_size: int = 256):
        self.model, self.batch_size, self.wait = model, max(1, int(batch_size)), max(0.0, batch_wait_ms) / 1000.0
        self.queue: asyncio.Queue[_Job] | None = None
        self.queue_size = queue_size
        self.pool = ThreadPoolExecutor(max_workers=1, thread_name_prefix="iadbench-score")
        self.task: asyncio.Task | None = None
        self.batches: deque[int] = deque(maxlen=4096)  # sizes of the last batches scored (tests)
        self.scored_batches = 0

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

    async def score(self, image: np.ndarray, model=None):
        """``image`` scored by ``model`` (default: the batcher's own)."""
        assert self.queue is not None
        fut = asyncio.get_running_loop().create_future()
        try:
            self.queue.put_nowait(_Job(image, fut, model if model is not None else self.model))
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
            groups: dict[int, list[_Job]] = {}
            for job in batch:  # one group per model version (a reload between two jobs)
                groups.setdefault(id(job.model), []).append(job)
            for jobs in groups.values():
                await self._run(loop, jobs)

    async def _run(self, loop, jobs: list[_Job]) -> None:
        self.batches.append(len(jobs))
        self.scored_batches += 1
        try:
            results = await loop.run_in_executor(self.pool, jobs[0].model.predict, [j.image for j in jobs], len(jobs))
        except Exception as exc:  # noqa: BLE001 - handed to each waiting request
            for job in jobs:
                if not job.future.done():
                    job.future.set_exception(exc)
            return
        for job, result in zip(jobs, results):
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


@dataclass
class _Remembered:
    data: bytes
    name: str
    score: float
    threshold: float
    version: int
    at: float


class RecentResults:
    """The last uploads scored, by result id, for feedback: at most ``max_items`` and
    ``max_bytes``, each for ``ttl_s`` seconds (oldest dropped first)."""

    def __init__(self, max_items: int = 128, max_bytes: int = 64 * 1024 * 1024, ttl_s: float = 600.0):
        self.max_items, self.max_bytes, self.ttl = int(max_items), int(max_bytes), float(ttl_s)
        self.items: OrderedDict[str, _Remembered] = OrderedDict()
        self.bytes = 0

    def _drop_oldest(self) -> None:
        _, old = self.items.popitem(last=False)
        self.bytes -= len(old.data)

    def _expire(self, now: float) -> None:
        while self.items and now - next(iter(self.items.values())).at > self.ttl:
            self._drop_oldest()

    def add(self, item: _Remembered) -> str | None:
        if self.max_items < 1 or len(item.data) > self.max_bytes:
            return None
        self._expire(item.at)
        while self.items and (len(self.items) >= self.max_items or self.bytes + len(item.data) > self.max_bytes):
            self._drop_oldest()
        key = secrets.token_urlsafe(12)
        self.items[key] = item
        self.bytes += len(item.data)
        return key

    def get(self, key: str) -> _Remembered | None:
        self._expire(time.monotonic())
        return self.items.get(key)


def create_app(
    model,
    token: str | None = None,
    max_body: int = DEFAULT_MAX_BODY,
    batch_size: int = 8,
    batch_wait_ms: float = 5.0,
    *,
    model_dir: str | Path | None = None,
    opener=None,
    reload_interval: float = 0.0,
    feedback=None,
    drift: dict | None = None,
    result_ttl_s: float = 600.0,
    result_max: int = 128,
    result_max_bytes: int = 64 * 1024 * 1024,
):
    """The FastAPI app serving ``model`` (iadbench.model.Model: a model folder with its
    runtime, as ``open_model`` gives it; or an iadbench.line.reload.Served).

    ``model_dir`` and ``opener`` (a path -> Model function) enable ``POST /reload``, and
    with ``reload_interval`` > 0 a poll of the folder's version every that many seconds.
    ``feedback``: an iadbench.line.feedback.FeedbackStore; by default the one of
    ``model_dir`` (or of the model's own folder when it holds a model.json), else none
    and ``/feedback`` answers 409. ``drift``: DriftMonitor options (window, quantile,
    alpha, min_count)."""
    from contextlib import asynccontextmanager

    from fastapi import FastAPI, Request
    from fastapi.responses import HTMLResponse, JSONResponse, Response

    from iadbench.images import max_pixels
    from iadbench.line.drift import DriftMonitor
    from iadbench.line.feedback import FeedbackError, FeedbackStore, normalise_label
    from iadbench.line.reload import ModelSlot, Served, folder_version
    from iadbench.line.telemetry import MetricsMiddleware, ServiceMetrics
    from iadbench.visual import overlay, png_bytes

    max_pixels()  # a malformed IADBENCH_MAX_PIXELS fails here, at start, not per request
    drift = dict(drift or {})
    DriftMonitor([], **drift)  # bad drift options fail here too
    if not isinstance(model, Served):
        version = 1
        home = Path(model_dir) if model_dir is not None else Path(model.directory)
        if (home / "model.json").is_file():
            version = folder_version(home)
        model = Served(model, version, DriftMonitor(model.calibration_scores, **drift))
    if feedback is None:
        home = Path(model_dir) if model_dir is not None else Path(model.model.directory)
        if (home / "model.json").is_file():
            feedback = FeedbackStore(home)
    metrics = ServiceMetrics()
    metrics.version.set(model.version)
    slot = ModelSlot(model, model_dir, opener, drift, on_swap=lambda new: metrics.version.set(new.version),
                     on_outcome=lambda result: metrics.reloads.labels(result).inc())
    batcher = MicroBatcher(model.model, batch_size, batch_wait_ms)
    recent = RecentResults(result_max, result_max_bytes, result_ttl_s)

    @asynccontextmanager
    async def lifespan(app):
        await batcher.start()
        poll = asyncio.create_task(slot.watch(reload_interval)) if reload_interval > 0 and slot.can_reload else None
        yield
        if poll is not None:
            poll.cancel()
            try:
                await poll
            except asyncio.CancelledError:
                pass
        await batcher.stop()

    app = FastAPI(title="iadbench", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)
    app.state.batcher, app.state.slot, app.state.metrics, app.state.feedback = batcher, slot, metrics, feedback

    def authorised(request: Request) -> bool:
        if not token:
            return True
        got = request.headers.get("authorization", "")
        return got.startswith("Bearer ") and secrets.compare_digest(got[7:].encode(), token.encode())

    def error(status: int, detail: str) -> JSONResponse:
        return JSONResponse({"detail": detail}, status_code=status)

    def drift_state(served: Served) -> dict:
        state = served.drift.state()
        metrics.drift(state)
        return {**state, "model_version": served.version}

    @app.get("/health")
    async def health():
        served = slot.current
        return {"status": "ok", "runtime": served.model.runtime_name, "batches": batcher.scored_batches,
                "model_version": served.version, "reload": slot.status(), "drift": drift_state(served),
                "feedback": feedback is not None}

    @app.get("/metrics")
    async def prometheus_metrics():
        drift_state(slot.current)
        body, ctype = metrics.render()
        return Response(body, media_type=ctype)

    @app.get("/model")
    async def model_info(request: Request):
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        served = slot.current
        m = served.model
        return {
            "detector": m.detector.name,
            "params": m.detector.params,
            "threshold": finite_or_none(m.threshold),
            "threshold_rule": m.threshold_rule,
            "input_size": list(m.input_size),
            "runtime": m.runtime_name,
            "runtime_detail": getattr(m.runtime, "detail", None),
            "token_required": bool(token),
            "version": served.version,
            "model_version": served.version,
            "lineage": served.lineage,
            "loaded_at": served.loaded_at,
            "feedback": feedback is not None,
        }

    @app.get("/", response_class=HTMLResponse)
    async def page():
        return HTMLResponse(PAGE.read_text(encoding="utf-8"))

    async def read_form(request: Request):
        ctype = request.headers.get("content-type", "")
        if not ctype.startswith("multipart/form-data"):
            raise UploadError(415, "send the image as multipart/form-data in the field 'image'")
        try:
            return await request.form(max_files=1, max_fields=4)
        except Exception as exc:  # noqa: BLE001 - a malformed multipart body
            raise UploadError(422, f"malformed multipart body ({type(exc).__name__})") from None

    async def form_image(form) -> tuple[bytes, str, np.ndarray]:
        upload = form.get("image")
        if upload is None or isinstance(upload, str):
            raise UploadError(422, "no file in the multipart field 'image'")
        data = await upload.read()
        name = upload.filename or "upload"
        return data, name, await asyncio.to_thread(decode_upload, data, name)  # off the event loop

    @app.post("/predict")
    async def predict(request: Request, format: str = "json"):  # noqa: A002 - the query name
        start = time.perf_counter()
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        if format not in ("json", "png"):
            return error(422, f"format must be json or png, got {format!r}")
        served = slot.current  # this request's version, start to end
        m = served.model
        form = None
        try:
            form = await read_form(request)
            data, name, image = await form_image(form)
            result = await batcher.score(image, m)
        except UploadError as exc:
            return error(exc.status, exc.detail)
        finally:
            if form is not None:
                await form.close()
        has_threshold = math.isfinite(m.threshold)
        verdict = ("defective" if result.anomalous else "good") if has_threshold else None
        served.drift.add(result.score)
        metrics.result(result.score, m.threshold, verdict)
        result_id = recent.add(_Remembered(data, name, result.score, m.threshold, served.version, time.monotonic()))
        png = await asyncio.to_thread(
            lambda: png_bytes(overlay(image, result.map, m.display_range, m.pixel_threshold), **OVERLAY_PNG))
        ms = (time.perf_counter() - start) * 1000.0
        if format == "png":
            return Response(png, media_type="image/png", headers={
                "X-Score": repr(result.score), "X-Ms": f"{ms:.1f}", "X-Model-Version": str(served.version),
                "X-Result-Id": result_id or ""})
        return {
            "score": result.score,
            "verdict": verdict,
            "threshold": m.threshold if has_threshold else None,
            "ms": ms,
            "model_version": served.version,
            "result_id": result_id,
            "map_png": base64.b64encode(png).decode("ascii"),
        }

    @app.post("/feedback", status_code=201)
    async def post_feedback(request: Request):
        """JSON {"result_id", "label"} for an upload the server still holds, or multipart
        (``image``, ``label``): the image is scored now, by the version being served."""
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        if feedback is None:
            return error(409, "this server keeps no feedback (it was not started from a model folder)")
        ctype = request.headers.get("content-type", "")
        form = None
        try:
            if ctype.startswith("application/json"):
                try:
                    body = await request.json()
                except ValueError:
                    return error(422, "malformed JSON body")
                if not isinstance(body, dict) or not isinstance(body.get("result_id"), str):
                    return error(422, 'send {"result_id": ..., "label": ...} or the image as multipart')
                label = normalise_label(body.get("label", ""))
                held = recent.get(body["result_id"])
                if held is None:
                    return error(404, f"result id unknown or expired (kept {result_ttl_s:.0f} s): send the image instead")
                data, name, score, threshold, version = held.data, held.name, held.score, held.threshold, held.version
            else:
                served = slot.current
                form = await read_form(request)
                label = normalise_label(str(form.get("label") or ""))
                data, name, image = await form_image(form)
                result = await batcher.score(image, served.model)
                score, threshold, version = result.score, served.model.threshold, served.version
            record = await asyncio.to_thread(feedback.add, data, name, label, score, threshold, version)
        except (UploadError, FeedbackError) as exc:
            return error(exc.status, exc.detail)
        finally:
            if form is not None:
                await form.close()
        metrics.feedback.labels(record["label"]).inc()
        return JSONResponse(record, status_code=201)

    @app.post("/reload")
    async def reload(request: Request, force: bool = False):
        if not authorised(request):
            return error(401, "missing or wrong bearer token")
        if not slot.can_reload:
            return error(409, "this server was not started from a model folder: nothing to reload")
        outcome = await slot.reload(force=force)
        if outcome["status"] == "failed":
            return error(422, f"reload failed, still serving version {outcome['version']}: {outcome['error']['error']}")
        return outcome

    if max_body:
        app.add_middleware(_BodyLimit, limit=max_body)
    app.add_middleware(MetricsMiddleware, metrics=metrics)  # outermost: counts the 413s too
    return app
