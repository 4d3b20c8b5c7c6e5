"""Any OpenAI-compatible chat-completions server: vLLM, Ollama, SGLang, LM Studio."""

from __future__ import annotations

import json
import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx

from agent.core.config import Settings
from tools.vision.base import Message, VisionError, VisionRequest, VisionResult
from tools.vision.images import fit_within, to_data_uri

log = logging.getLogger(__name__)

RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504}


def to_openai_messages(messages: Sequence[Message], max_side: int) -> list[dict[str, Any]]:
    """Convert Hugging Face style messages (PIL images inline) to the OpenAI wire format."""
    converted: list[dict[str, Any]] = []
    for message in messages:
        content = message.get("content")
        out: dict[str, Any] = {"role": message["role"]}
        if isinstance(content, list):
            parts: list[dict[str, Any]] = []
            for part in content:
                if part.get("type") == "image":
                    url = to_data_uri(fit_within(part["image"], max_side))
                    parts.append({"type": "image_url", "image_url": {"url": url}})
                else:
                    parts.append({"type": "text", "text": part.get("text", "")})
            out["content"] = parts
        else:
            out["content"] = content or ""
        if message.get("tool_calls"):
            out["tool_calls"] = [
                {
                    "id": call.get("id", f"call_{i}"),
                    "type": "function",
                    "function": {
                        "name": call["name"],
                        "arguments": json.dumps(call.get("arguments", call.get("args", {}))),
                    },
                }
                for i, call in enumerate(message["tool_calls"])
            ]
        if message["role"] == "tool" and message.get("tool_call_id"):
            out["tool_call_id"] = message["tool_call_id"]
        converted.append(out)
    return converted


class OpenAICompatBackend:
    """Sends each request as one chat completion; a batch is sent concurrently.

    The server batches on its side (vLLM and SGLang do continuous batching).
    """

    def __init__(
        self,
        model: str,
        *,
        base_url: str,
        api_key: str = "EMPTY",
        timeout_s: float = 60.0,
        retries: int = 2,
        max_side: int = 448,
        max_new_tokens: int = 256,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.model_name = model
        self.base_url = base_url.rstrip("/")
        self.retries = retries
        self.max_side = max_side
        self.max_new_tokens = max_new_tokens
        self._client = httpx.Client(
            base_url=self.base_url,
            headers={"Authorization": f"Bearer {api_key}"},
            timeout=httpx.Timeout(timeout_s, connect=min(timeout_s, 10.0)),
            transport=transport,
        )

    def payload(self, request: VisionRequest) -> dict[str, Any]:
        """The JSON body sent for one request."""
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": to_openai_messages(request.messages, self.max_side),
            "max_tokens": request.max_new_tokens or self.max_new_tokens,
            "temperature": 0,
        }
        if request.tools:
            body["tools"] = list(request.tools)
        return body

    def _post(self, body: dict[str, Any]) -> dict[str, Any]:
        last_error = ""
        for attempt in range(self.retries + 1):
            if attempt:
                time.sleep(min(0.5 * 2 ** (attempt - 1), 8.0))
            try:
                response = self._client.post("/chat/completions", json=body)
            except httpx.TimeoutException:
                last_error = f"timed out talking to {self.base_url}"
            except httpx.TransportError as exc:
                last_error = f"cannot reach {self.base_url}: {exc}"
            else:
                if response.status_code == 200:
                    try:
                        return response.json()
                    except ValueError as exc:
                        raise VisionError(f"{self.base_url} answered with invalid JSON") from exc
                last_error = f"{self.base_url} answered HTTP {response.status_code}: {response.text[:200]}"
                if response.status_code not in RETRYABLE_STATUS:
                    break
            log.warning("openai backend attempt %d failed: %s", attempt + 1, last_error)
        raise VisionError(last_error)

    def _one(self, request: VisionRequest) -> VisionResult:
        start = time.perf_counter()
        data = self._post(self.payload(request))
        try:
            message = data["choices"][0]["message"]
        except (KeyError, IndexError, TypeError) as exc:
            raise VisionError(f"unexpected answer from {self.base_url}: {str(data)[:200]}") from exc
        usage = data.get("usage") or {}
        return VisionResult(
            text=(message.get("content") or "").strip(),
            model=data.get("model", self.model_name),
            latency_ms=(time.perf_counter() - start) * 1000,
            prompt_tokens=int(usage.get("prompt_tokens", 0)),
            output_tokens=int(usage.get("completion_tokens", 0)),
            extra={"tool_calls": message.get("tool_calls") or []},
        )

    def generate(self, requests: Sequence[VisionRequest]) -> list[VisionResult]:
        if len(requests) <= 1:
            return [self._one(r) for r in requests]
        with ThreadPoolExecutor(max_workers=min(len(requests), 16)) as pool:
            return list(pool.map(self._one, requests))


def from_settings(settings: Settings) -> OpenAICompatBackend:
    """The ``openai`` backend plugin: an OpenAI-compatible server at ``settings.openai_base_url``."""
    return OpenAICompatBackend(
        settings.model,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        timeout_s=settings.openai_timeout_s,
        retries=settings.openai_retries,
        max_side=settings.max_side,
        max_new_tokens=settings.max_new_tokens,
    )
