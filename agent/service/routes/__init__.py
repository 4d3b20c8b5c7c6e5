"""The API's routes, one module per noun; each gives ``router(settings)``."""
