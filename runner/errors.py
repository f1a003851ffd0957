"""The one error type a user sees before anything runs."""


class SetupError(RuntimeError):
    """The experiment cannot start as configured; the message says what to change (which file, which setting)."""
