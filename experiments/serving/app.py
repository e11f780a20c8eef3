"""The HTTP face of a :class:`FusionService`: a FastAPI app (run by uvicorn in ``fusionsim serve``).

Routes: ``POST /rank``, ``POST /reward`` (bodies in ``serving.requests``), ``GET /health`` and ``GET /metrics``
(Prometheus text format). A bad body is answered 4xx with ``{"error": <one line>, "field": <path>}``: 400 for a
body that is not JSON, 404 for an unknown ``event_id``, 422 for a bad value.

The handlers take the raw request and are added as plain Starlette routes of the FastAPI app (no dependency
injection or response model): measured with ``benchmarks/serve_latency.py``, FastAPI's decorated routes
saturated at 591 requests/s, these at 685, the rest equal. Bodies are parsed with orjson.

Handlers run on the event loop, one at a time, so the service needs no locks. Two background tasks run beside
them: one closes the join window of waiting events (every 0.1 s), one writes the decision log every
``flush_seconds`` on a worker thread (the loop goes on serving while Parquet is written; the rows were made into
tables as the decisions completed, see ``FusionService.decisions_table``).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time

import orjson
from fastapi import FastAPI, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response

from fusionsim.experiments.serving.requests import RequestError, parse_rank, parse_rewards
from fusionsim.experiments.serving.service import FusionService

EXPIRE_EVERY = 0.1
"""Seconds between closings of the join window."""


def _json(data: object, status: int = 200) -> Response:
    return Response(orjson.dumps(data), status_code=status, media_type="application/json")


def parse_json(raw: bytes) -> object:
    """The JSON value of a body: orjson (about ten times faster on the scores' floats), else the standard
    library, which also reads the NaN and Infinity tokens Python's json writes, so that a non-finite score is
    refused naming its field rather than as a body that is not JSON."""
    try:
        return orjson.loads(raw)
    except orjson.JSONDecodeError:
        return json.loads(raw)


def create_app(service: FusionService) -> FastAPI:
    """The app serving ``service``; its lifespan starts the background tasks and closes the service."""

    async def expire_loop() -> None:
        while True:
            await asyncio.sleep(EXPIRE_EVERY)
            service.expire()

    async def flush_loop() -> None:
        while True:
            await asyncio.sleep(service.config.flush_seconds)
            await flush()

    async def flush() -> None:
        part, table, n = service.take_completed()
        if n:
            await asyncio.to_thread(service.write_table, part, table)
            service.count_written(n)

    @contextlib.asynccontextmanager
    async def lifespan(app: FastAPI):
        tasks = [asyncio.create_task(expire_loop()), asyncio.create_task(flush_loop())]
        try:
            yield
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await flush()  # whatever a cancelled flush had taken is written before the pending events
            service.close()

    app = FastAPI(title="fusionsim serve", lifespan=lifespan, docs_url=None, redoc_url=None, openapi_url=None)

    async def body_of(request: Request) -> object:
        raw = await request.body()
        try:
            return parse_json(raw)
        except (ValueError, UnicodeDecodeError) as exc:
            raise RequestError("body", f"the body is not JSON ({type(exc).__name__}: {str(exc)[:80]})",
                               status=400) from None

    def refused(exc: RequestError) -> Response:
        service.metrics.counts["errors"] += 1
        return _json({"error": str(exc), "field": exc.field}, exc.status)

    async def rank(request: Request) -> Response:
        started = time.perf_counter()
        try:
            batch = parse_rank(await body_of(request), service.served.arm_names, service.n_candidates,
                               service.slate_size)
        except RequestError as exc:
            return refused(exc)
        results = service.rank(batch)
        response = _json(results[0] if batch.single else {"results": results})
        service.metrics.counts["rank_calls"] += 1
        service.metrics.observe_latency(time.perf_counter() - started)
        return response

    async def reward(request: Request) -> Response:
        try:
            outcomes, single = parse_rewards(await body_of(request), service.slate_size_of)
        except RequestError as exc:
            return refused(exc)
        statuses = service.reward(outcomes)
        return _json({"status": statuses[0]} if single else {"statuses": statuses})

    async def health(request: Request) -> Response:
        return _json({"status": "ok", "policy": service.config.policy, "agent": service.served.agent,
                      "learn": service.config.learn, "policy_version": service.policy_version,
                      "start": service.start, "pending": service.pending, "shop": service.shop})

    async def metrics(request: Request) -> Response:
        return PlainTextResponse(service.metrics.render(service.policy_version, service.pending),
                                 media_type="text/plain; version=0.0.4")

    app.add_route("/rank", rank, methods=["POST"])
    app.add_route("/reward", reward, methods=["POST"])
    app.add_route("/health", health, methods=["GET"])
    app.add_route("/metrics", metrics, methods=["GET"])

    @app.exception_handler(Exception)
    async def failed(request: Request, exc: Exception) -> JSONResponse:  # a bug, not bad input: say so, count it
        service.metrics.counts["errors"] += 1
        return JSONResponse({"error": f"internal error ({type(exc).__name__}: {str(exc)[:200]})", "field": None},
                            status_code=500)

    return app

