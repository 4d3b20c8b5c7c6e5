"""The agent: answers questions about a feed with the vision model as its eyes.

``create_agent`` with the tools of :func:`tools.registry.build_tools` and middleware that

- puts the latest observations of the source (the window) and the observations recalled for
  the question into the system prompt of every model call (:class:`ObservationContext`),
- trims the conversation the model sees to a token budget (``trim_messages``),
- returns tool errors to the model as error messages instead of ending the run,
- caps model and tool calls per question.

Conversations persist in LangGraph's SQLite checkpointer (``HOME/conversations.db``), one
thread per conversation.
"""

from __future__ import annotations

import logging
import sqlite3
import uuid
from collections.abc import Callable, Iterator, Sequence
from contextlib import ExitStack, contextmanager
from typing import Any

import openai
from langchain.agents import create_agent
from langchain.agents.middleware import (
    AgentMiddleware,
    ModelCallLimitMiddleware,
    ModelRequest,
    ModelResponse,
    ToolCallLimitMiddleware,
    ToolCallRequest,
    ToolErrorMiddleware,
    wrap_tool_call,
)
from langchain_core.language_models import BaseChatModel
from langchain_core.messages import AIMessage, AIMessageChunk, BaseMessage, HumanMessage
from langchain_core.messages.utils import count_tokens_approximately, trim_messages
from langchain_core.tools import BaseTool
from langgraph.checkpoint.base import BaseCheckpointSaver
from langgraph.checkpoint.sqlite import SqliteSaver
from langgraph.graph.state import CompiledStateGraph

from agent.assistant.chat_model import make_chat_model
from agent.assistant.context import ContextMiddleware, ObservationContext
from agent.core.config import Settings
from agent.core.errors import ScenewatchError
from agent.events.watchlist import Watchlist
from agent.sources import SourceReader
from memory.store import Store
from memory.vectors import VectorIndex, open_vectors
from prompts import load_prompt
from tools.registry import build_tools
from tools.vision.base import VisionBackend
from tools.vision.engine import Engine
from tools.vision.registry import make_backend

log = logging.getLogger(__name__)


class TrimMiddleware(AgentMiddleware):
    """Shows the model only the latest turns that fit the token budget (the thread keeps all)."""

    def __init__(self, max_tokens: int) -> None:
        super().__init__()
        self.max_tokens = max_tokens

    def wrap_model_call(
        self, request: ModelRequest, handler: Callable[[ModelRequest], ModelResponse]
    ) -> ModelResponse:
        system = count_tokens_approximately([request.system_message]) if request.system_message else 0
        kept = trim_messages(
            request.messages,
            max_tokens=max(self.max_tokens - system, self.max_tokens // 4),
            token_counter=count_tokens_approximately,
            strategy="last",
            start_on="human",
            allow_partial=False,
        )
        if not kept:  # the current turn alone is over budget: keep it whole
            last_human = max(i for i, m in enumerate(request.messages) if isinstance(m, HumanMessage))
            kept = request.messages[last_human:]
        if len(kept) < len(request.messages):
            log.debug("trimmed the conversation from %d to %d messages", len(request.messages), len(kept))
        return handler(request.override(messages=kept))


def tool_error_message(exc: Exception, request: ToolCallRequest) -> str:
    """A failed tool's error as the model reads it (the run goes on)."""
    name = request.tool_call["name"]
    detail = str(exc) if isinstance(exc, ScenewatchError) else f"{type(exc).__name__}: {exc}"
    log.warning("tool %s failed: %s", name, detail)
    return f"Error: {name} failed: {detail}"


@wrap_tool_call
def log_tool_calls(request: ToolCallRequest, handler: Callable[[ToolCallRequest], Any]) -> Any:
    """Log each tool call the model makes."""
    args = ", ".join(f"{key}={value!r}" for key, value in request.tool_call["args"].items())
    log.info("%s(%s)", request.tool_call["name"], args)
    return handler(request)


def build_agent(
    chat_model: BaseChatModel,
    tools: Sequence[BaseTool],
    context: ObservationContext,
    settings: Settings,
    *,
    checkpointer: BaseCheckpointSaver | None = None,
    on_context: Callable[[str], None] | None = None,
) -> CompiledStateGraph:
    """The LangChain agent over ``tools`` with context, trimming, tool errors and call limits."""
    return create_agent(
        chat_model,
        list(tools),
        system_prompt=load_prompt("assistant"),
        middleware=[
            ContextMiddleware(context, on_context),
            TrimMiddleware(settings.agent_token_budget),
            log_tool_calls,
            ToolErrorMiddleware(tool_error_message),
            ModelCallLimitMiddleware(run_limit=settings.agent_max_calls, exit_behavior="end"),
            ToolCallLimitMiddleware(run_limit=settings.agent_max_tool_calls),
        ],
        checkpointer=checkpointer,
        name="scenewatch",
    )


@contextmanager
def _server_errors(settings: Settings) -> Iterator[None]:
    """OpenAI-compatible server failures as one-line ScenewatchErrors."""
    try:
        yield
    except openai.APIConnectionError as exc:
        raise ScenewatchError(f"cannot reach the chat model server at {settings.openai_base_url}") from exc
    except openai.APIError as exc:
        raise ScenewatchError(f"the chat model server at {settings.openai_base_url} failed: {exc}") from exc


class Assistant:
    """One conversation thread with the agent."""

    def __init__(self, graph: CompiledStateGraph, settings: Settings, *, thread: str) -> None:
        self.graph = graph
        self.settings = settings
        self.thread = thread
        self.config: dict[str, Any] = {
            "configurable": {"thread_id": thread},
            "recursion_limit": 4 * (settings.agent_max_calls + settings.agent_max_tool_calls) + 10,
        }

    def ask(self, question: str) -> str:
        """The answer to ``question`` in this thread."""
        with _server_errors(self.settings):
            state = self.graph.invoke({"messages": [HumanMessage(question)]}, self.config)
        return _answer_text(state["messages"][-1])

    def stream(self, question: str) -> Iterator[str]:
        """The answer to ``question`` in pieces, as the model writes it."""
        with _server_errors(self.settings):
            for chunk, _ in self.graph.stream(
                {"messages": [HumanMessage(question)]}, self.config, stream_mode="messages"
            ):
                if isinstance(chunk, AIMessage | AIMessageChunk) and chunk.text:
                    yield chunk.text

    @property
    def messages(self) -> list[BaseMessage]:
        """The whole thread so far (as checkpointed)."""
        return list(self.graph.get_state(self.config).values.get("messages", []))


def _answer_text(message: BaseMessage) -> str:
    return message.text.strip() or "(the model gave no answer)"


def open_checkpointer(settings: Settings) -> SqliteSaver:
    """The conversation store: ``HOME/conversations.db``."""
    path = settings.home / "conversations.db"
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        return SqliteSaver(sqlite3.connect(path, check_same_thread=False))
    except (OSError, sqlite3.Error) as exc:
        raise ScenewatchError(f"cannot open the conversation store {path}: {exc}") from exc


def default_source(store: Store, source: str | None) -> str:
    """The source a conversation is about: the one given, else the last one watched."""
    if source:
        return source
    if store.count() == 0:
        raise ScenewatchError(
            f"no observations in {store.path}: run `scenewatch watch SOURCE` first, "
            "or name a live source with --source"
        )
    return store.recent(None, 1)[0].source


@contextmanager
def open_assistant(
    settings: Settings,
    *,
    source: str | None = None,
    thread: str | None = None,
    engine: VisionBackend | None = None,
    chat_model: BaseChatModel | None = None,
    vectors: VectorIndex | None = None,
    on_context: Callable[[str], None] | None = None,
    watches: Watchlist | None = None,
) -> Iterator[Assistant]:
    """An assistant over ``settings.db_path``; builds (and closes) what is not given. ``watches``:
    where its ``watch`` tool puts watches (a running service's); default: stored for the next serve."""
    if not settings.db_path.is_file() and not source:
        raise ScenewatchError(f"no observation database at {settings.db_path}: run `scenewatch watch` first")
    with ExitStack() as stack:
        store = Store(settings.db_path)
        stack.callback(store.close)
        topic = default_source(store, source)
        if engine is None:
            owned = Engine(
                make_backend(settings), batch_size=settings.batch_size, batch_wait_ms=settings.batch_wait_ms
            )
            stack.callback(owned.close)
            engine = owned
        if vectors is None:
            vectors = stack.enter_context(open_vectors(store, settings))
        checkpointer = open_checkpointer(settings)
        stack.callback(checkpointer.conn.close)
        context = ObservationContext(store, vectors, topic, window=settings.window, k=settings.recall_k)
        graph = build_agent(
            chat_model or make_chat_model(settings, engine),
            build_tools(
                engine,
                store,
                settings,
                vectors=vectors,
                frames=SourceReader(store, [source] if source else []),
                source=topic,
                watches=watches or Watchlist(store, named=[source] if source else []),
            ),
            context,
            settings,
            checkpointer=checkpointer,
            on_context=on_context,
        )
        thread = thread or settings.agent_thread or uuid.uuid4().hex[:8]
        log.info("conversation thread %s (continue it with --thread %s)", thread, thread)
        yield Assistant(graph, settings, thread=thread)
