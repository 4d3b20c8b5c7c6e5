"""The always-on service (``scenewatch serve``) and what it serves besides its own routes."""
