"""The agent's chat model: the local Qwen3-VL through the engine, or an OpenAI-compatible server.

:class:`LocalChatModel` renders the conversation and the bound tools through the model's own
chat template (``VisionRequest(messages=..., tools=...)``), sends it through the
:class:`~tools.vision.engine.Engine` so the watch loop and the agent share one copy of the weights,
and parses ``<tool_call>`` blocks into ``AIMessage.tool_calls``.
"""

from __future__ import annotations

import json
import logging
import uuid
from collections.abc import Callable, Iterator, Sequence
from typing import Any

from langchain_core.callbacks import CallbackManagerForLLMRun
from langchain_core.language_models import BaseChatModel, LanguageModelInput
from langchain_core.messages import (
    AIMessage,
    AIMessageChunk,
    BaseMessage,
    HumanMessage,
    SystemMessage,
    ToolMessage,
)
from langchain_core.outputs import ChatGeneration, ChatGenerationChunk, ChatResult
from langchain_core.runnables import Runnable
from langchain_core.tools import BaseTool
from langchain_core.utils.function_calling import convert_to_openai_tool
from pydantic import ConfigDict, Field

from agent.assistant.tool_calls import parse_tool_calls
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.core.plugins import Registry
from tools.vision.base import Message, VisionBackend, VisionRequest, VisionResult

log = logging.getLogger(__name__)


def to_hf_messages(messages: Sequence[BaseMessage]) -> list[Message]:
    """LangChain messages as Hugging Face chat-template messages (text only).

    Assistant tool calls become ``tool_calls: [{"type": "function", "function": {name, arguments}}]``
    and tool results ``role: "tool"`` messages, the shapes Qwen's template renders.
    """
    converted: list[Message] = []
    for message in messages:
        if isinstance(message, SystemMessage):
            converted.append({"role": "system", "content": message.text})
        elif isinstance(message, HumanMessage):
            converted.append({"role": "user", "content": message.text})
        elif isinstance(message, AIMessage):
            entry: Message = {"role": "assistant", "content": message.text}
            if message.tool_calls:
                entry["tool_calls"] = [
                    {"type": "function", "function": {"name": call["name"], "arguments": call["args"]}}
                    for call in message.tool_calls
                ]
            converted.append(entry)
        elif isinstance(message, ToolMessage):
            converted.append({"role": "tool", "name": message.name or "", "content": message.text})
        else:
            raise TypeError(f"cannot send a {type(message).__name__} to the local model")
    return converted


def to_ai_message(text: str, result: VisionResult | None = None) -> AIMessage:
    """The generated text as an AIMessage: parsed tool calls (unique ids) and the remaining text."""
    reply = parse_tool_calls(text)
    if reply.malformed:
        log.warning("the model wrote %d malformed tool call(s); kept as text", len(reply.malformed))
    usage = None
    if result is not None and result.prompt_tokens:
        usage = {
            "input_tokens": result.prompt_tokens,
            "output_tokens": result.output_tokens,
            "total_tokens": result.prompt_tokens + result.output_tokens,
        }
    return AIMessage(
        content=reply.content,
        tool_calls=[
            {
                "name": call.name,
                "args": call.arguments,
                "id": f"call_{uuid.uuid4().hex[:16]}",
                "type": "tool_call",
            }
            for call in reply.calls
        ],
        usage_metadata=usage,
        response_metadata={"model_name": result.model} if result is not None else {},
    )


def _cut_at_stop(text: str, stop: list[str] | None) -> str:
    for word in stop or ():
        text = text.split(word, 1)[0]
    return text


class LocalChatModel(BaseChatModel):
    """Qwen3-VL as a LangChain chat model with tool calling, served by the shared engine.

    ``engine`` is anything with the backend's ``generate(requests)`` (the :class:`Engine`).
    Streaming yields the whole reply as one chunk: the engine batches whole generations.
    """

    model_config = ConfigDict(arbitrary_types_allowed=True)

    engine: VisionBackend = Field(exclude=True)
    model_name: str = "local"
    max_new_tokens: int | None = None

    @property
    def _llm_type(self) -> str:
        return "scenewatch-local-qwen"

    @property
    def _identifying_params(self) -> dict[str, Any]:
        return {"model_name": self.model_name, "max_new_tokens": self.max_new_tokens}

    def bind_tools(
        self,
        tools: Sequence[dict[str, Any] | type | Callable[..., Any] | BaseTool],
        *,
        tool_choice: str | None = None,
        **kwargs: Any,
    ) -> Runnable[LanguageModelInput, AIMessage]:
        """Bind tools (as OpenAI tool dicts, rendered by the chat template); the model chooses when."""
        if tool_choice not in (None, "auto"):
            log.debug("tool_choice=%r is not enforced by the local model", tool_choice)
        return self.bind(tools=[convert_to_openai_tool(tool) for tool in tools], **kwargs)

    def _call(self, messages: list[BaseMessage], stop: list[str] | None, tools: Any) -> AIMessage:
        request = VisionRequest(
            messages=tuple(to_hf_messages(messages)),
            tools=tuple(tools or ()),
            max_new_tokens=self.max_new_tokens,
        )
        result = self.engine.generate([request])[0]
        log.debug("local chat model answered in %.0f ms: %r", result.latency_ms, result.text[:200])
        return to_ai_message(_cut_at_stop(result.text, stop), result)

    def _generate(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> ChatResult:
        return ChatResult(generations=[ChatGeneration(message=self._call(messages, stop, tools))])

    def _stream(
        self,
        messages: list[BaseMessage],
        stop: list[str] | None = None,
        run_manager: CallbackManagerForLLMRun | None = None,
        tools: list[dict[str, Any]] | None = None,
        **kwargs: Any,
    ) -> Iterator[ChatGenerationChunk]:
        message = self._call(messages, stop, tools)
        chunk = AIMessageChunk(
            content=message.content,
            tool_call_chunks=[
                {"name": call["name"], "args": json.dumps(call["args"]), "id": call["id"], "index": index}
                for index, call in enumerate(message.tool_calls)
            ],
            usage_metadata=message.usage_metadata,
            response_metadata=message.response_metadata,
            chunk_position="last",
        )
        yield ChatGenerationChunk(message=chunk)


ChatModelFactory = Callable[[Settings, VisionBackend], BaseChatModel]

CHAT_MODELS: Registry[ChatModelFactory] = Registry(
    "chat model",
    "scenewatch.chat_models",
    {
        "local": "agent.assistant.chat_model:local_chat_model",
        "openai": "agent.assistant.chat_model:openai_chat_model",
    },
)
"""The agent's chat model for each vision backend that can hold a conversation, by backend name."""


def local_chat_model(settings: Settings, engine: VisionBackend) -> BaseChatModel:
    """The local Qwen3-VL as the agent's chat model, answering through ``engine`` (the shared model)."""
    return LocalChatModel(
        engine=engine, model_name=settings.model, max_new_tokens=settings.agent_max_new_tokens
    )


def openai_chat_model(settings: Settings, engine: VisionBackend) -> BaseChatModel:
    """``ChatOpenAI`` on the OpenAI-compatible server (vLLM with ``--enable-auto-tool-choice
    --tool-call-parser hermes``, Ollama, ...)."""
    from langchain_openai import ChatOpenAI

    return ChatOpenAI(
        model=settings.model,
        base_url=settings.openai_base_url,
        api_key=settings.openai_api_key,
        timeout=settings.openai_timeout_s,
        max_retries=settings.openai_retries,
        max_tokens=settings.agent_max_new_tokens,
        temperature=0,
    )


def make_chat_model(settings: Settings, engine: VisionBackend) -> BaseChatModel:
    """The agent's chat model for ``settings.backend`` (:data:`CHAT_MODELS`); a backend without one
    (an object detector cannot converse) is a ScenewatchError."""
    if settings.backend not in CHAT_MODELS.names():
        raise ScenewatchError(
            f"the {settings.backend} backend cannot hold a conversation: use --backend "
            f"{' or '.join(CHAT_MODELS.names())} for the agent"
        )
    return CHAT_MODELS.get(settings.backend)(settings, engine)
