"""Operations endpoints: liveness, readiness and Prometheus metrics. None needs a key, and none
says anything about any workspace's data."""

from __future__ import annotations

from litestar import Controller, Response, get
from litestar.datastructures import State
from litestar.openapi.datastructures import ResponseSpec

from .errors import envelope
from .schemas import Failure, Health


class OpsController(Controller):
    path = "/"
    tags = ["ops"]
    security = [{}]  # no credential

    @get(
        "/health",
        operation_id="health",
        summary="Liveness: the process is up and serving (never touches the database)",
    )
    async def health(self) -> Health:
        return Health(success=True, message="Serving", status="ok")

    @get(
        "/ready",
        operation_id="ready",
        summary="Readiness: the database answers and its schema is at this release's migration",
        description="200 when ready; 503 with the error envelope (code `not_ready`) otherwise.",
        responses={
            503: ResponseSpec(
                Failure, description="Not ready (the error says why).", generate_examples=False
            )
        },
    )
    async def ready(self, state: State) -> Response[Health]:
        readiness = await state.services.health.readiness()
        if not readiness.ready:
            return envelope(503, f"not ready: {readiness.reason}", "not_ready")
        return Response(Health(success=True, message="Ready", status="ready"))

    @get("/metrics", include_in_schema=False)
    async def metrics(self, state: State) -> Response[bytes]:
        metrics = state.services.metrics
        return Response(metrics.exposition(), media_type=metrics.content_type)
