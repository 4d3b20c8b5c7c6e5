"""The local chat model: messages through the chat template, tool calls parsed, the engine shared."""

from __future__ import annotations

from pathlib import Path

from langchain_core.messages import AIMessage, HumanMessage, SystemMessage, ToolMessage
from langchain_core.tools import tool
from langchain_openai import ChatOpenAI
from transformers import AutoTokenizer

from agent.assistant.chat_model import LocalChatModel, make_chat_model, to_hf_messages
from agent.core.config import Settings
from tools.vision.base import VisionRequest
from tools.vision.engine import Engine
from tools.vision.local import LocalQwenBackend
from tools.vision.scripted import ScriptedBackend


@tool
def recall(query: str, since: str | None = None) -> str:
    """Search past observations for the query."""
    return query


CALL = '<tool_call>\n{"name": "recall", "arguments": {"query": "red box", "since": "1h"}}\n</tool_call>'

CONVERSATION = [
    SystemMessage("You watch a camera."),
    HumanMessage("When did the box appear?"),
    AIMessage("", tool_calls=[{"name": "recall", "args": {"query": "red box"}, "id": "call_1"}]),
    ToolMessage("[14:03:05, video 0:05.0] a red box", tool_call_id="call_1", name="recall"),
]


def test_messages_render_through_the_tiny_template(tiny_checkpoint: Path) -> None:
    messages = to_hf_messages(CONVERSATION)
    assert messages[2]["tool_calls"] == [
        {"type": "function", "function": {"name": "recall", "arguments": {"query": "red box"}}}
    ]
    assert messages[3] == {"role": "tool", "name": "recall", "content": "[14:03:05, video 0:05.0] a red box"}
    tokenizer = AutoTokenizer.from_pretrained(tiny_checkpoint)
    model = LocalChatModel(engine=ScriptedBackend(), model_name="x")
    tools = model.bind_tools([recall]).kwargs["tools"]
    text = tokenizer.apply_chat_template(messages, tools=tools, tokenize=False, add_generation_prompt=True)
    assert '"name": "recall"' in text.split("<tools>\n")[1].split("</tools>")[0]
    assert '<tool_call>\n{"name": "recall", "arguments": {"query": "red box"}}\n</tool_call>' in text
    assert "<tool_response>\n[14:03:05, video 0:05.0] a red box\n</tool_response>" in text
    assert text.endswith("<|im_start|>assistant\n")


def test_tool_calls_parsed_with_unique_ids_through_the_engine() -> None:
    backend = ScriptedBackend([CALL + "\n" + CALL, "Before the block. <tool_call>{broken</tool_call>"])
    with Engine(backend, batch_wait_ms=0) as engine:
        model = LocalChatModel(engine=engine, model_name="scripted", max_new_tokens=64).bind_tools([recall])
        first = model.invoke(CONVERSATION[:2])
        second = model.invoke(CONVERSATION[:2])
    assert [call["name"] for call in first.tool_calls] == ["recall", "recall"]
    assert first.tool_calls[0]["args"] == {"query": "red box", "since": "1h"}
    assert len({call["id"] for call in first.tool_calls}) == 2
    assert first.content == ""
    assert second.tool_calls == []
    assert second.content == "Before the block. <tool_call>{broken</tool_call>"
    request: VisionRequest = backend.requests[0]
    assert request.max_new_tokens == 64
    assert request.tools[0]["type"] == "function"
    assert request.tools[0]["function"]["name"] == "recall"
    assert request.messages[0] == {"role": "system", "content": "You watch a camera."}


def test_stream_yields_the_reply_with_its_tool_calls() -> None:
    model = LocalChatModel(engine=ScriptedBackend(["Let me check.\n" + CALL]), model_name="s")
    chunks = list(model.bind_tools([recall]).stream([HumanMessage("when?")]))
    merged = chunks[0]
    for chunk in chunks[1:]:
        merged += chunk
    assert merged.content == "Let me check."
    assert merged.tool_calls[0]["name"] == "recall"
    assert merged.tool_calls[0]["args"] == {"query": "red box", "since": "1h"}


def test_the_tiny_model_answers_through_the_engine(tiny_checkpoint: Path) -> None:
    backend = LocalQwenBackend(str(tiny_checkpoint), device="cpu")
    with Engine(backend) as engine:
        reply = LocalChatModel(engine=engine, max_new_tokens=8).bind_tools([recall]).invoke(CONVERSATION)
    assert isinstance(reply, AIMessage)
    assert reply.usage_metadata is not None and reply.usage_metadata["input_tokens"] > 50
    assert engine.stats.requests == 1


def test_make_chat_model_picks_the_backend() -> None:
    engine = ScriptedBackend()
    local = make_chat_model(Settings(model="/models/qwen", agent_max_new_tokens=99), engine)
    assert isinstance(local, LocalChatModel) and local.engine is engine and local.max_new_tokens == 99
    remote = make_chat_model(
        Settings(backend="openai", model="qwen3-vl", openai_base_url="http://gpu:8000/v1"), engine
    )
    assert isinstance(remote, ChatOpenAI)
    assert remote.model_name == "qwen3-vl" and remote.openai_api_base == "http://gpu:8000/v1"
