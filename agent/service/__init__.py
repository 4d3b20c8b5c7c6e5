"""``scenewatch serve``: the always-on service: the watch loops of its sources and the HTTP API on
one engine (:mod:`agent.service.runtime`, :mod:`agent.service.app`, :mod:`agent.service.server`), and
what it serves besides its own routes (:mod:`agent.service.mcp`)."""
