"""scenewatch: tools/vision."""
