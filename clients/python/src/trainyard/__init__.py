"""Python client of trainyard: submit trainings to a cluster, follow them, predict.

    from trainyard import Client
    client = Client("http://127.0.0.1:5000")
    task = client.submit("mlp", epochs=50)
    for p in task.progress():
        print(p["percent"])
    print(task.wait()["metrics"])
"""

from .client import TERMINAL_STATES, Client, Event, Task
from .errors import (
    Conflict,
    Forbidden,
    InvalidRequest,
    NotFound,
    RateLimited,
    TaskFailed,
    TrainyardError,
    Unauthorized,
    Unavailable,
    WaitTimeout,
)

__all__ = [
    "Client",
    "Task",
    "Event",
    "TERMINAL_STATES",
    "TrainyardError",
    "InvalidRequest",
    "Unauthorized",
    "Forbidden",
    "NotFound",
    "Conflict",
    "RateLimited",
    "Unavailable",
    "WaitTimeout",
    "TaskFailed",
]
