"""Routes for the office screens' users that the rest of the API lacked (issue 7).

The staff's office page (gateway/web/static/office.html: quarantine, suppressions, reports,
registry, services, points) works on the existing JSON API and needs nothing of its own here.

What is here is the service worker's side: `GET /api/v1/worker/orders`, the orders dispatched to
the worker a `service_worker` token (or session) acts for (`Principal.person_id`, a svc_workers
id). Their steps on those orders (accept, refuse, check-in, check-out) are the existing routes of
gateway/api_services.py, which answer 404 for another worker's order. Every other route answers
403 to this role.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Query
from sqlalchemy import select

from care.services import OrderState
from gateway.api import MAX_BODY_BYTES, PrincipalAnyDep, RuntimeDep, _reading, allow
from gateway.api_services import OrderPublic, _order_out, _Route, own_worker
from gateway.auth import Role
from gateway.tables_services import svc_orders

# The service worker's own routes. `_Route` turns a refusal into its {code, en, zh} answer.
worker = APIRouter(
    prefix="/api/v1",
    dependencies=[Depends(allow(Role.SERVICE_WORKER))],
    max_body_size=MAX_BODY_BYTES,
    route_class=_Route,
    tags=["services: worker"],
)


@worker.get("/worker/orders")
def my_orders(
    rt: RuntimeDep,
    principal: PrincipalAnyDep,
    state: OrderState | None = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    offset: Annotated[int, Query(ge=0, le=1_000_000)] = 0,
) -> list[OrderPublic]:
    """The orders dispatched to the calling service worker (now or before: an order they
    refused went back to the station and is not theirs any more), by scheduled time."""
    me = own_worker(principal)
    assert me is not None  # allow() let only service workers in
    q = (
        select(svc_orders)
        .where(svc_orders.c.worker_id == me)
        .order_by(svc_orders.c.scheduled_at, svc_orders.c.created_at, svc_orders.c.id)
        .limit(limit)
        .offset(offset)
    )
    if state is not None:
        q = q.where(svc_orders.c.state == state.value)
    with _reading(rt) as conn:
        rows = conn.execute(q).all()
    return [_order_out(rt, r) for r in rows]


# create_app includes `router`.
router = APIRouter()
router.include_router(worker)

__all__ = ["router"]
