"""scenewatch: memory."""
