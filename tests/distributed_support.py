"""A real ``redis-server`` for the scale-out tests: on 127.0.0.1, a free port, stopped at the end
(:class:`agent.bench.redis_server.ScratchRedis`, which the benchmark uses too)."""

from __future__ import annotations

from agent.bench.redis_server import ScratchRedis as RedisServer
from agent.bench.redis_server import free_port

__all__ = ["RedisServer", "free_port"]
