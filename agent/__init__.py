"""scenewatch: agent."""
