"""scenewatch: tools."""
