"""``GET /.well-known/jwks.json``: the public key webhook receivers verify ``X-Fal-Webhook-Signature``
with (docs/contract.md §3.8). The key is the one workers sign with (darkroom.webhook_signing)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse

from darkroom.webhook_signing import jwks, load_signing_key

from ..deps import Services, services

router = APIRouter(tags=["webhooks"])


@router.get("/.well-known/jwks.json")
def webhook_jwks(request: Request, svc: Annotated[Services, Depends(services)]) -> JSONResponse:
    """JSON Web Key Set (OKP / Ed25519) of the webhook signing key."""
    public = getattr(request.app.state, "webhook_public_key", None)
    if public is None:
        public = load_signing_key(svc.settings, svc.store.shared_signing_key).public_key()
        request.app.state.webhook_public_key = public
    return JSONResponse(jwks(public), headers={"Cache-Control": "public, max-age=300"})
