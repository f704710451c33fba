"""The plain-RQ baseline's job: does nothing, like the `noop` task kind."""


def noop() -> None:
    return None
