"""The error type whose message is shown to the user as it is (no traceback)."""


class ScenewatchError(RuntimeError):
    """A failure the user can act on: a missing file, a dead server, a bad rules file."""
