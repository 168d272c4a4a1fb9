"""The deploy tests use the serving tests' trained workspace and live server:
a deployment or a prediction log is best checked against a real server."""

from serve.conftest import (  # noqa: F401  (fixtures, registered by import)
    COLUMNS,
    LiveServer,
    bearer,
    client,
    keys,
    live,
    project,
    record,
    served,
    toy_frame,
)
