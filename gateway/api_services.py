"""HTTP API for the service module (issue 5). Included by gateway/api.py's create_app.

Same conventions as gateway/api.py, whose auth dependency and helpers it uses.
"""

from fastapi import APIRouter, Depends

from gateway.api import MAX_BODY_BYTES, authenticate

router = APIRouter(
    prefix="/api/v1", dependencies=[Depends(authenticate)], max_body_size=MAX_BODY_BYTES
)
