"""All of scenewatch's settings in one place.

Every field can be set through an environment variable with the ``SCENEWATCH_`` prefix
(``SCENEWATCH_MAX_SIDE=336``); CLI flags override them through :func:`load_settings`.
A ``*_s`` field takes seconds or a duration as the CLI does (``SCENEWATCH_EVERY_S=500ms``, ``1h30m``).
"""

from __future__ import annotations

import math
import re
from pathlib import Path
from typing import Annotated, Any, Literal

from platformdirs import user_data_dir
from pydantic import AfterValidator, BeforeValidator, Field, SecretStr, ValidationError
from pydantic_core import PydanticCustomError
from pydantic_settings import BaseSettings, NoDecode, SettingsConfigDict

from agent.core.durations import parse_duration
from agent.core.errors import ScenewatchError

DEFAULT_MODEL = "Qwen/Qwen3-VL-8B-Instruct"

MAX_SECONDS = 7 * 86400.0
"""The longest duration a setting takes: a week, finite and well inside what the seconds are passed
on to (OpenCV's timeouts in int milliseconds end at 24.8 days; thread waits, sockets)."""

_DEVICE = re.compile(r"auto|cpu|mps|cuda(?::\d+)?")


def _device(value: Any) -> Any:
    """A torch device name scenewatch runs on, lower-cased; whether it is there is checked at model load."""
    if not isinstance(value, str):
        return value
    device = value.strip().lower()
    if not _DEVICE.fullmatch(device):
        raise PydanticCustomError(
            "device",
            "device {device} is not a torch device (auto, cpu, cuda, cuda:N, mps)",
            {"device": repr(value)},
        )
    return device


def _seconds(value: Any) -> Any:
    """Seconds from a duration as the CLI takes it (``1s``, ``500ms``, ``2m``, ``1h30m``); numbers pass."""
    if not isinstance(value, str):
        return value
    try:
        float(value)
    except ValueError:
        pass
    else:
        return value  # a plain number: pydantic parses it and its bounds speak for a bad one
    try:
        return parse_duration(value)
    except ScenewatchError as exc:
        raise PydanticCustomError("duration", "{problem}", {"problem": str(exc)}) from None


def _words(value: Any) -> Any:
    """A list from a comma-separated string (an environment variable); lists pass."""
    if isinstance(value, str):
        return [word.strip() for word in value.split(",") if word.strip()]
    return value


def _bounded(seconds: float) -> float:
    """Finite, and at most :data:`MAX_SECONDS`."""
    if not math.isfinite(seconds):
        raise PydanticCustomError(
            "duration", "must be a finite number of seconds (got {value})", {"value": seconds}
        )
    if seconds > MAX_SECONDS:
        raise PydanticCustomError(
            "duration", "must be at most a week, 604800 s (got {value} s)", {"value": f"{seconds:g}"}
        )
    return seconds


Device = Annotated[str, BeforeValidator(_device)]
"""``auto``, ``cpu``, ``cuda``, ``cuda:N`` or ``mps``."""

Seconds = Annotated[float, BeforeValidator(_seconds), AfterValidator(_bounded)]
"""A number of seconds, or a duration string that :func:`agent.core.durations.parse_duration` reads;
finite and at most :data:`MAX_SECONDS`."""


class Settings(BaseSettings):
    """scenewatch configuration (environment variables ``SCENEWATCH_<FIELD>``)."""

    model_config = SettingsConfigDict(env_prefix="SCENEWATCH_", extra="ignore")

    # Where data lives: observation database, vector store, thumbnails, knowledge bases.
    home: Path = Field(default_factory=lambda: Path(user_data_dir("scenewatch")))
    db: Path | None = Field(default=None, description="observation database (default HOME/scenewatch.db)")

    # Vision model.
    backend: str = Field(
        default="local", pattern=r"^[a-z][a-z0-9_-]*$", description="vision backend: local, openai, ..."
    )
    model: str = DEFAULT_MODEL
    device: Device = "auto"
    dtype: Literal["auto", "bfloat16", "float16", "float32"] = "auto"
    attn: Literal["auto", "sdpa", "flash_attention_2", "eager"] = "auto"
    max_side: int = Field(default=448, ge=32, description="longest image side sent to the model")
    max_new_tokens: int = Field(default=256, ge=1)
    decoder: Literal["auto", "hf", "static"] = Field(
        default="auto", description="auto: CUDA-graph static decoder on GPU, transformers generate on CPU"
    )

    # OpenAI-compatible server (vLLM, Ollama, SGLang, LM Studio).
    openai_base_url: str = "http://localhost:8000/v1"
    openai_api_key: str = "EMPTY"
    openai_timeout_s: Seconds = Field(default=60.0, gt=0)
    openai_retries: int = Field(default=2, ge=0)

    # Watching.
    every_s: Seconds = Field(default=1.0, gt=0, description="sampling interval in seconds")
    heartbeat_s: Seconds = Field(default=10.0, gt=0, description="analyse at least this often")
    window: int = Field(default=5, ge=0, description="previous descriptions in each prompt")
    gate_threshold: float = Field(
        default=0.01, ge=0, le=1, description="changed share of the gate thumbnail that wakes the model"
    )
    gate_side: int = Field(default=64, ge=8, description="side of the grey thumbnail the gate compares")
    batch_size: int = Field(default=8, ge=1, description="most requests the engine batches")
    batch_wait_ms: float = Field(default=20.0, ge=0, description="longest wait to fill a batch")
    deadline_s: Seconds = Field(default=30.0, gt=0, description="drop a frame not answered by then")
    reconnect_max_s: Seconds = Field(default=30.0, gt=0, description="cap on reconnect backoff")
    thumb_side: int = Field(default=320, ge=32, description="longest side of stored thumbnails")
    pipeline_depth: int = Field(
        default=8, ge=1, description="requests in flight per file source (default: a full batch)"
    )
    frame_interval_s: Seconds | None = Field(default=None, gt=0, description="image folder spacing (every_s)")
    stream_timeout_s: Seconds = Field(default=10.0, gt=0, description="open/read timeout for stream URLs")
    stream_give_up_s: Seconds = Field(
        default=60.0,
        ge=0,
        description="give up a live source that sends no frame this long after the start (0: never)",
    )
    sample_jitter_s: Seconds = Field(
        default=0.0,
        ge=0,
        description="how far from its sampling time (at most half the interval) a key frame may be taken"
        " instead of the exact frame, so that only key frames are decoded; live: how old (0: exact frames)",
    )

    # Perception: the object detector, tracks and zones ahead of the vision model (README "Perception").
    detector: bool = Field(
        default=True, description="run the detector stage in watch (always on with --backend detector)"
    )
    detector_threshold: float = Field(default=0.5, ge=0.05, le=1, description="least detection score kept")
    detector_classes: str = Field(
        default="", description="COCO classes kept, comma-separated (person,car); empty: every class"
    )
    detector_tiling: str = Field(
        default="auto",
        pattern=r"^(auto|off|\d+x\d+)$",
        description="auto (2x2 on CCTV frames, more on large ones, more on crowds), off, or COLSxROWS",
    )
    read_text: bool = Field(
        default=False, description="read text (OCR) on each analysed frame: about 0.5 s each on a CPU core"
    )

    # Memory.
    chroma_url: str | None = Field(default=None, description="Chroma server URL; local if unset")
    chroma_timeout_s: Seconds = Field(
        default=10.0, gt=0, le=86400, description="longest wait for a Chroma server to answer a call"
    )
    recall_k: int = Field(default=5, ge=1)
    narrate_token_budget: int = Field(default=3000, ge=200)
    index_batch: int = Field(default=256, ge=1, le=5000, description="observations embedded per index write")
    episode_similarity: float = Field(
        default=0.8, ge=0, le=1, description="summary cosine similarity that keeps an episode going"
    )
    episode_gap_s: Seconds = Field(default=120.0, gt=0, description="a longer silence starts a new episode")

    # Agent.
    agent_max_calls: int = Field(default=8, ge=1, description="most model calls to answer one question")
    agent_max_tool_calls: int = Field(default=12, ge=1, description="most tool calls to answer one question")
    agent_token_budget: int = Field(default=6000, ge=500, description="conversation tokens the model sees")
    agent_max_new_tokens: int = Field(default=512, ge=1, description="most tokens in one agent reply")
    agent_thread: str | None = Field(default=None, description="conversation thread; a new one if unset")

    # Knowledge base.
    kb_chunk_size: int = Field(default=800, ge=100, description="most characters in a manual chunk")
    kb_chunk_overlap: int = Field(default=120, ge=0, description="characters neighbouring chunks share")
    kb_k: int = Field(default=5, ge=1, description="manual chunks retrieved for a troubleshooting question")
    kb_min_score: float = Field(
        default=0.4, ge=-1, le=1, description="cosine similarity below which the manuals do not cover a case"
    )

    # Events.
    events_backoff_s: Seconds = Field(default=2.0, gt=0, description="first retry delay of a failed delivery")
    events_backoff_max_s: Seconds = Field(
        default=300.0, gt=0, description="longest retry delay of a delivery"
    )
    events_close_s: Seconds = Field(default=5.0, ge=0, description="time for a last delivery attempt at exit")

    # Service (`scenewatch serve`): the HTTP API.
    api_host: str = Field(default="127.0.0.1", description="address the API listens on")
    api_port: int = Field(default=8765, ge=0, le=65535, description="port the API listens on (0: any free)")
    api_token: SecretStr | None = Field(
        default=None, description="bearer token the API requires (required off loopback)"
    )
    api_cors_origins: Annotated[list[str], NoDecode, BeforeValidator(_words)] = Field(
        default_factory=list, description="origins allowed to call the API from a browser (comma-separated)"
    )
    api_max_upload_bytes: int = Field(
        default=10 * 2**20, ge=1024, description="largest image upload (look, troubleshoot)"
    )
    api_max_body_bytes: int = Field(default=2**20, ge=1024, description="largest JSON request body")
    api_stream_ping_s: Seconds = Field(default=15.0, gt=0, le=86400, description="SSE keep-alive interval")
    api_shutdown_grace_s: Seconds = Field(
        default=5.0, ge=0, le=86400, description="time open requests get to finish at shutdown"
    )

    # MQTT: events, per-source state on retained topics, Home Assistant discovery (off without a host).
    mqtt_host: str | None = Field(default=None, description="MQTT broker host; MQTT is off when unset")
    mqtt_port: int = Field(default=1883, ge=1, le=65535)
    mqtt_prefix: str = Field(default="scenewatch", pattern=r"^[^#+/\s][^#+\s]*$", description="topic prefix")
    mqtt_client_id: str | None = Field(default=None, description="MQTT client id (default: a random one)")
    mqtt_username: str | None = None
    mqtt_password: str | None = None
    mqtt_tls: bool = Field(default=False, description="connect to the broker over TLS")
    mqtt_discovery: bool = Field(
        default=False, description="Home Assistant discovery: a binary sensor per rule"
    )

    # Scale-out over Redis Streams: `scenewatch capture`, `worker`, `record` (docs/DEPLOY.md).
    redis_url: str | None = Field(
        default=None,
        pattern=r"^(redis|rediss|unix)://\S*$",
        description="Redis server for capture, worker, record",
    )
    redis_prefix: str = Field(
        default="scenewatch", pattern=r"^[A-Za-z0-9_.-]+$", description="prefix of scenewatch's Redis keys"
    )
    redis_frames_max: int = Field(
        default=2000, ge=1, description="most gated frames waiting in the frames stream (each a JPEG)"
    )
    redis_claim_idle_s: Seconds = Field(
        default=30.0, gt=0, description="a frame a worker holds this long unanswered is taken by another"
    )
    redis_max_deliveries: int = Field(
        default=3, ge=1, description="a frame given to workers this many times goes to the dead letters"
    )

    # Event clips.
    public_url: str | None = Field(
        default=None,
        pattern=r"^https?://\S+$",
        description="base URL of `scenewatch serve` in webhook and MQTT payloads (clip links)",
    )
    clip_after_s: Seconds = Field(default=3.0, ge=0, description="seconds a clip goes on after its event")
    clip_side: int = Field(default=640, ge=64, description="longest side of clip frames")

    @property
    def db_path(self) -> Path:
        """The SQLite observation database."""
        return self.db if self.db is not None else self.home / "scenewatch.db"

    @property
    def data_dir(self) -> Path:
        """Folder for derived data (vectors, thumbnails): beside the database."""
        return self.db_path.parent

    @property
    def chroma_dir(self) -> Path:
        return self.data_dir / "chroma"

    @property
    def thumbs_dir(self) -> Path:
        return self.data_dir / "thumbs"

    @property
    def kb_dir(self) -> Path:
        return self.home / "kb"

    @property
    def clips_dir(self) -> Path:
        """Event clips (MP4), beside the database; events name them relative to ``data_dir``."""
        return self.data_dir / "clips"


def load_settings(**overrides: Any) -> Settings:
    """Settings from the environment, with the given non-None values (CLI flags) on top.

    An invalid value (from a flag or a ``SCENEWATCH_*`` variable) is a ScenewatchError naming it.
    """
    try:
        return Settings(**{k: v for k, v in overrides.items() if v is not None})
    except ValidationError as exc:
        problems = "; ".join(
            f"{'.'.join(str(part) for part in error['loc'])} (SCENEWATCH_{str(error['loc'][0]).upper()}): "
            f"{error['msg']}"
            for error in exc.errors()
        )
        raise ScenewatchError(f"invalid setting: {problems}") from None
