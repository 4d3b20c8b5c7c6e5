"""``/api/ask`` (JSON, or streamed as Server-Sent Events), ``/api/look`` and ``/api/troubleshoot`` (uploads).

Everything runs on the service's one engine: the agent, a look at an uploaded picture and the
troubleshooter share the model that watches the sources.
"""

from __future__ import annotations

import asyncio
import threading
from collections.abc import AsyncIterator
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, Header, UploadFile
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import StreamingResponse
from pydantic import BaseModel, Field

from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.service.errors import Conflict, UpstreamFailed
from agent.service.routes.common import ServiceDep, stored_source
from agent.service.runtime import Service
from agent.service.security import read_upload
from agent.service.stream import sse
from prompts import load_prompt
from tools.vision.base import VisionRequest

SSE_HEADERS = {"Cache-Control": "no-store", "X-Accel-Buffering": "no"}


class Question(BaseModel):
    question: str = Field(
        min_length=1, max_length=4000, pattern=r"\S", description="The question, in plain language."
    )
    thread: str | None = Field(
        default=None, max_length=200, description="Conversation to continue (default: a new one)."
    )
    source: str | None = Field(
        default=None, description="Source the question is about (default: the last watched)."
    )


def _topic(service: Service, given: str | None) -> str | None:
    """The source asked about: a stored or recorded one only (a request never names a file for the
    agent to open); 404 for another, 409 when nothing was observed yet."""
    if given:
        return stored_source(service, given)
    if service.reader.count() == 0:
        raise Conflict("nothing observed yet: add a source, or name one with source")
    return None


def _answer(service: Service, question: Question, topic: str | None) -> dict[str, Any]:
    with service.assistant(source=topic, thread=question.thread) as assistant:
        try:
            answer = assistant.ask(question.question)
        except ScenewatchError as exc:
            raise UpstreamFailed(str(exc)) from None
        return {"answer": answer, "thread": assistant.thread}


async def _streamed(service: Service, question: Question, topic: str | None) -> AsyncIterator[str]:
    """The answer as SSE: ``thread``, then ``token`` pieces, then ``done`` (or ``error``).

    The agent runs on a thread of its own; if the client goes, the thread stops reading the answer
    after the piece in hand.
    """
    loop = asyncio.get_running_loop()
    pieces: asyncio.Queue[tuple[str, dict[str, Any]]] = asyncio.Queue()
    gone = threading.Event()

    def put(kind: str, data: dict[str, Any]) -> None:
        loop.call_soon_threadsafe(pieces.put_nowait, (kind, data))

    def run() -> None:
        try:
            with service.assistant(source=topic, thread=question.thread) as assistant:
                put("thread", {"thread": assistant.thread})
                said = []
                for piece in assistant.stream(question.question):
                    if gone.is_set():
                        return
                    said.append(piece)
                    put("token", {"text": piece})
                answer = "".join(said).strip() or "(the model gave no answer)"
                put("done", {"answer": answer, "thread": assistant.thread})
        except ScenewatchError as exc:
            put("error", {"error": str(exc)})
        except Exception as exc:
            put("error", {"error": f"{type(exc).__name__}: {exc}"})
        finally:
            put("end", {})

    threading.Thread(target=run, name="scenewatch-ask", daemon=True).start()
    try:
        while True:
            kind, data = await pieces.get()
            if kind == "end":
                return
            yield sse(kind, data)
    finally:
        gone.set()


def router(settings: Settings) -> APIRouter:
    api = APIRouter(prefix="/api", tags=["agent"])

    @api.post(
        "/ask",
        summary="Ask the agent; streamed as Server-Sent Events when the client accepts text/event-stream",
        max_body_size=settings.api_max_body_bytes,
        responses={200: {"content": {"application/json": {}, "text/event-stream": {}}}},
    )
    async def ask(
        question: Question, service: ServiceDep, accept: Annotated[str, Header()] = "application/json"
    ) -> Any:
        service.require_ready()
        topic = await run_in_threadpool(_topic, service, question.source)
        if "text/event-stream" in accept:
            return StreamingResponse(
                _streamed(service, question, topic), media_type="text/event-stream", headers=SSE_HEADERS
            )
        return await run_in_threadpool(_answer, service, question, topic)

    upload_limit = settings.api_max_upload_bytes

    @api.post("/look", summary="Describe an uploaded image, as `look --json`", max_body_size=upload_limit)
    async def look(
        service: ServiceDep,
        image: Annotated[UploadFile, File(description="The image (JPEG, PNG, ...).")],
        prompt: Annotated[str | None, Form(max_length=4000, description="What to ask about it.")] = None,
    ) -> dict[str, Any]:
        picture = await read_upload(image)
        engine = service.engine
        request = VisionRequest.ask(prompt or load_prompt("look"), [picture])
        try:
            result = (await run_in_threadpool(engine.generate, [request]))[0]
        except Exception as exc:
            raise UpstreamFailed(f"the model failed: {type(exc).__name__}: {exc}") from None
        return result.to_dict()  # as look --json

    @api.post(
        "/troubleshoot",
        summary="Troubleshoot a device from a photo and the manuals, as `troubleshoot --json`",
        max_body_size=upload_limit,
    )
    async def troubleshoot(
        service: ServiceDep,
        image: Annotated[UploadFile, File(description="A photo of the device.")],
        question: Annotated[str, Form(max_length=4000, description="What you see or want to know.")] = "",
        kb: Annotated[str | None, Form(description="Knowledge base name (default: default).")] = None,
    ) -> dict[str, Any]:
        from memory.knowledge.knowledge_base import DEFAULT_KB, KnowledgeBase
        from tools.troubleshoot import troubleshoot as answer

        picture = await read_upload(image)
        engine = service.engine

        def run() -> dict[str, Any]:
            base = KnowledgeBase.open(service.settings, kb or DEFAULT_KB).require()
            return answer(engine, picture, base, service.settings, question).to_dict()

        return await run_in_threadpool(run)

    return api
