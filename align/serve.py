"""``geoalign serve``: an HTTP API that marketing tools (CMS, e-mail platform, ad server) call to generate copy in a
region's voice with the version deployed to that region.

The base model is loaded once; each region's deployed version is a LoRA adapter loaded beside it on first use
(PEFT multi-adapter) and picked per request, so `geoalign deploy set` switches a region without a restart. Keys
are scoped to regions (`geoalign keys add`); decoding parameters are validated by pydantic (422 with the field
named); request bodies are size-limited as they arrive (413) and generation is time-limited (504, and the
generation stops). OpenAPI docs at ``/docs``.
"""


import threading
import time
from contextlib import nullcontext
from typing import Annotated

from fastapi import Depends, FastAPI, Header, HTTPException
from fastapi.responses import JSONResponse
from peft import PeftModel
from pydantic import BaseModel, Field
from sqlalchemy import Engine, select
from starlette.concurrency import run_in_threadpool
from starlette.types import ASGIApp, Message, Receive, Send
from starlette.types import Scope as ASGIScope

from align.generate import Constraints, Deadline, DeadlineExceeded, generate_constrained
from align.sampling import DecodingParams, load_policy, render_all
from collect.prompting import TASK_LABELS, BriefContext
from db.apikeys import Scope, authenticate
from db.errors import NotFound, ValidationError
from db.lookups import get_region
from db.models import Deployment, ModelVersion, Region
from db.session import session_scope

MAX_BODY_BYTES = 1_000_000
TaskType = Annotated[str, Field(pattern="^(" + "|".join(TASK_LABELS) + ")$")]


class Item(BaseModel):
    id: str | None = Field(None, max_length=128, description="your id, echoed back")
    brief: str = Field(..., min_length=1, max_length=2000, description="what the copy is for")
    task_type: TaskType = Field(..., description="ad_copy, meta_description, social_post or email_subject")
    month: int | None = Field(None, ge=1, le=12, description="month the copy runs in, 1-12 (default: this month)")


class Params(BaseModel):
    max_new_tokens: int = Field(96, ge=1, le=256)
    temperature: float = Field(0.8, gt=0, le=2)
    top_p: float = Field(0.95, gt=0, le=1)
    seed: int = Field(0, ge=0)


class GenerateRequest(BaseModel):
    region: str = Field(..., description="region code, e.g. en-GB-manchester")
    items: list[Item] = Field(..., min_length=1, description="briefs to write copy for (at most the server's batch)")
    params: Params = Params()
    ban: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field([], max_length=100,
                                                                        description="terms that must not appear")
    boost: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field([], max_length=100,
                                                                         description="terms to favour")
    require: list[Annotated[str, Field(min_length=1, max_length=100)]] = Field(
        [], max_length=20, description="terms every output must contain (e.g. a brand name)")
    use_region_terms: bool = Field(True, description="ban the region's references to avoid, boost its local terms")


class Output(BaseModel):
    id: str | None
    text: str
    banned_terms_present: list[str]
    required_terms_missing: list[str] = []


class GenerateResponse(BaseModel):
    region: str
    version: str
    outputs: list[Output]


class BodyLimit:
    """ASGI middleware: a body over ``limit`` bytes is a 413, counted as it arrives (a chunked body has no
    Content-Length), and a malformed Content-Length is a 400. The body is read, at most ``limit`` bytes of it,
    before the app runs and then handed to it whole."""

    def __init__(self, app: ASGIApp, limit: int) -> None:
        self.app, self.limit = app, limit

    async def __call__(self, scope: ASGIScope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        lengths = [value for name, value in scope["headers"] if name.lower() == b"content-length"]
        if len(lengths) > 1 or (lengths and not lengths[0].isdigit()):  # bytes.isdigit: ASCII digits only
            await JSONResponse({"detail": "malformed Content-Length header: expected one whole number of bytes"},
                               status_code=400)(scope, receive, send)
            return
        too_big = JSONResponse({"detail": f"request body over {self.limit} bytes"}, status_code=413)
        if lengths and int(lengths[0]) > self.limit:
            await too_big(scope, receive, send)
            return
        chunks, size, more = [], 0, True
        while more:
            message = await receive()
            if message["type"] != "http.request":  # the client went away before sending the whole body
                return
            chunks.append(message.get("body", b""))
            size += len(chunks[-1])
            if size > self.limit:  # stop reading here: the rest of the body is never parsed
                await too_big(scope, receive, send)
                return
            more = message.get("more_body", False)
        body = [{"type": "http.request", "body": b"".join(chunks), "more_body": False}]

        async def replay() -> Message:
            return body.pop() if body else await receive()

        await self.app(scope, replay, send)


class Policies:
    """The base model, loaded once, with one LoRA adapter per deployed version loaded on first use."""

    def __init__(self) -> None:
        self.lock = threading.Lock()  # one generation at a time: the model is shared and adapters are switched
        self.model = None
        self.tokenizer = None
        self.base: str | None = None
        self.adapters: set[str] = set()

    def generate(self, base_model: str, version: str, adapter: str | None, contexts: list[BriefContext],
                 params: DecodingParams, constraints: Constraints, seed: int, deadline: float) -> list[str]:
        """The texts for ``contexts``; ``DeadlineExceeded`` once ``time.monotonic()`` passes ``deadline``, whether
        that happens while waiting for the model (nothing is generated) or while generating (stopped at once)."""
        if not self.lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise DeadlineExceeded("the deadline passed while waiting for the model")
        try:
            if self.model is None or self.base != base_model:
                self.model, self.tokenizer = load_policy(base_model)
                self.base, self.adapters = base_model, set()
            model = self.model
            if adapter:
                if not isinstance(model, PeftModel):
                    model = self.model = PeftModel.from_pretrained(model, adapter, adapter_name=version)
                elif version not in self.adapters:
                    model.load_adapter(adapter, adapter_name=version)
                self.adapters.add(version)
                model.set_adapter(version)
            # a version without an adapter is the base: switch off whatever adapter is loaded
            base_only = model.disable_adapter() if not adapter and hasattr(model, "disable_adapter") else nullcontext()
            prompts = render_all(self.tokenizer, contexts)  # the chat template, as in training
            with base_only:
                texts, _ = generate_constrained(model, self.tokenizer, prompts, params, constraints, seed,
                                                batch_size=len(prompts), progress=False, deadline=Deadline(deadline))
            return texts
        finally:
            self.lock.release()


def bearer_token(authorization: str) -> str | None:
    """The credentials of an ``Authorization: Bearer <key>`` header, the scheme in any case (RFC 7235), else None."""
    scheme, _, credentials = authorization.strip().partition(" ")
    return (credentials.strip() or None) if scheme.lower() == "bearer" else None


def create_app(engine: Engine, max_batch: int = 32, timeout_s: float = 60.0) -> FastAPI:
    app = FastAPI(title="GeoAlign generation API", version="1",
                  description="Marketing copy in a region's voice, from the model version deployed to that region.")
    policies = app.state.policies = Policies()
    app.add_middleware(BodyLimit, limit=MAX_BODY_BYTES)

    def scope(authorization: Annotated[str | None, Header()] = None,
              x_api_key: Annotated[str | None, Header()] = None) -> Scope:
        token = x_api_key or (bearer_token(authorization) if authorization else None)
        if not token:
            raise HTTPException(401, "missing API key: send Authorization: Bearer <key> or X-API-Key",
                                headers={"WWW-Authenticate": "Bearer"})
        with session_scope(engine) as session:
            found = authenticate(session, token)
        if found is None:
            raise HTTPException(401, "unknown or revoked API key", headers={"WWW-Authenticate": "Bearer"})
        return found

    @app.get("/healthz")
    def healthz() -> dict:
        return {"status": "ok"}

    @app.get("/v1/regions")
    def regions(key: Annotated[Scope, Depends(scope)]) -> list[dict]:
        """The regions this key may use, with the version deployed to each."""
        with session_scope(engine) as session:
            rows = session.execute(select(Region.code, ModelVersion.name).join(Deployment, Deployment.region_id ==
                                                                               Region.id)
                                   .join(ModelVersion, Deployment.model_version_id == ModelVersion.id)
                                   .order_by(Region.code)).all()
        return [{"region": code, "version": name} for code, name in rows if key.allows(code)]

    @app.post("/v1/generate", response_model=GenerateResponse)
    async def generate(body: GenerateRequest, key: Annotated[Scope, Depends(scope)]) -> GenerateResponse:
        """Copy for each brief, in the region's voice, under the region's and the request's term constraints."""
        deadline = time.monotonic() + timeout_s
        if len(body.items) > max_batch:
            raise HTTPException(422, f"items: at most {max_batch} per request, got {len(body.items)}")
        if not key.allows(body.region):
            raise HTTPException(403, f"this key may not use region {body.region!r}")
        with session_scope(engine) as session:
            try:
                region = get_region(session, body.region)
            except NotFound as exc:
                raise HTTPException(404, str(exc)) from None
            deployed = session.scalar(select(ModelVersion).join(Deployment, Deployment.model_version_id ==
                                                                ModelVersion.id)
                                      .where(Deployment.region_id == region.id))
            if deployed is None:
                raise HTTPException(409, f"no version is deployed to {body.region!r} (geoalign deploy set)")
            terms = (list(region.avoid_terms or []), list(region.local_terms or []))
            contexts = [BriefContext.of(region, i.task_type, i.brief, i.month) for i in body.items]
            version = (deployed.name, deployed.base_model, deployed.adapter_path)
        try:
            constraints = Constraints.for_region(*terms, body.ban, body.boost,
                                                 use_region=body.use_region_terms, require=body.require)
        except ValidationError as exc:
            raise HTTPException(422, f"require: {exc}") from None
        params = DecodingParams(max_new_tokens=body.params.max_new_tokens, temperature=body.params.temperature,
                                top_p=body.params.top_p)
        try:
            # the worker thread cannot be cancelled from here, so the deadline travels with it and stops it: the 504
            # goes out once the model is free again, within one decoding step of the timeout
            texts = await run_in_threadpool(policies.generate, version[1], version[0], version[2], contexts, params,
                                            constraints, body.params.seed, deadline)
        except DeadlineExceeded:
            raise HTTPException(504, f"generation took longer than {timeout_s:g} s") from None
        except ValidationError as exc:  # e.g. max_new_tokens too short to spell the required terms
            raise HTTPException(422, str(exc)) from None
        return GenerateResponse(region=body.region, version=version[0], outputs=[
            Output(id=i.id, text=t, banned_terms_present=constraints.violations(t),
                   required_terms_missing=constraints.missing(t))
            for i, t in zip(body.items, texts, strict=True)])

    return app
