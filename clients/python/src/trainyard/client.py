"""The trainyard client: `Client` talks to one node's REST API; `Task` is one training."""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Optional, Sequence, Union

import httpx

from .errors import TaskFailed, TrainyardError, WaitTimeout, from_response

#: States after which a task never changes.
TERMINAL_STATES = ("SUCCESS", "FAILURE", "REVOKED")


@dataclass(frozen=True)
class Event:
    """One Server-Sent Event: its id (to resume after), kind (`state`, `progress`) and data."""

    id: Optional[str]
    event: str
    data: dict[str, Any]


BATCH_ITEMS = 1_000
"""Most requests `Client.submit_many` sends in one `POST /tasks`."""


class Client:
    """A node's API. `url` is e.g. `http://127.0.0.1:5000`; `token` is a bearer token, when the
    node has tokens. Any node of a cluster answers for every task.

    Celery: `Client(url)` stands where `Celery(broker=...)` and `AsyncResult` did.
    """

    def __init__(
        self,
        url: str,
        token: Optional[str] = None,
        timeout: float = 30.0,
        verify: Union[bool, str] = True,
    ) -> None:
        headers = {"Accept": "application/json"}
        if token:
            headers["Authorization"] = f"Bearer {token}"
        self.url = url.rstrip("/")
        self._http = httpx.Client(base_url=self.url, headers=headers, timeout=timeout, verify=verify)

    def close(self) -> None:
        self._http.close()

    def __enter__(self) -> "Client":
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # ---- requests

    def _request(self, method: str, path: str, **kwargs: Any) -> Any:
        response = self._http.request(method, path, **kwargs)
        try:
            body = response.json()
        except ValueError:
            body = response.text
        if response.status_code >= 400:
            raise from_response(response.status_code, body, response.headers.get("retry-after"))
        return body

    # ---- trainings

    def submit(
        self,
        model_type: str,
        *,
        idempotency_key: Optional[str] = None,
        **request: Any,
    ) -> "Task":
        """Submits a training (`POST /train/{model_type}/async`) and returns its `Task`.

        `request` holds the body's fields: `epochs`, `learning_rate`, `hidden_sizes`,
        `dataset`, `batch_size`, `seed`, `test_fraction`, `gbdt`, `priority`, `max_retries`,
        `time_limit_s`, `device`, `callback_url`, `cache` (answered by an earlier equal
        success, SUCCESS at once). With `idempotency_key`, submitting again returns the first
        task instead of a new one.

        Celery: `train_task.delay(...)` / `apply_async(...)`.
        """
        headers = {"Idempotency-Key": idempotency_key} if idempotency_key else {}
        answer = self._request("POST", f"/train/{model_type}/async", json=request, headers=headers)
        return Task(self, answer["task_id"])

    def submit_many(self, requests: Sequence[dict[str, Any]]) -> list["Task"]:
        """Submits many trainings at once (`POST /tasks`) and returns their `Task`s, in order.

        Each request is a dict of `submit`'s fields plus its `model_type` (and, optionally,
        its own `idempotency_key`). The server stores a batch all or nothing: one bad request
        raises `InvalidRequest` naming every problem by index (`items[3].epochs ...`) and
        stores none. Sent in batches of at most `BATCH_ITEMS` (the server's default
        `[tasks] max_batch`); each batch is stored or refused on its own.

        Celery: `group(train_task.s(...) for ...).apply_async()`.
        """
        tasks: list[Task] = []
        for start in range(0, len(requests), BATCH_ITEMS):
            batch = list(requests[start : start + BATCH_ITEMS])
            answer = self._request("POST", "/tasks", json=batch)
            tasks.extend(Task(self, task_id) for task_id in answer["task_ids"])
        return tasks

    def train(self, model_type: str, *, wait_s: float = 300, **request: Any) -> dict[str, Any]:
        """Trains and waits for the end on the server (`POST /train/{model_type}?wait_s=`).
        Raises `WaitTimeout` (with `task_id`) past `wait_s`."""
        return self._request(
            "POST",
            f"/train/{model_type}",
            params={"wait_s": wait_s},
            json=request,
            timeout=wait_s + 30,
        )

    def task(self, task_id: str) -> "Task":
        """The task with this id (nothing is asked of the node yet). Celery: `AsyncResult(id)`."""
        return Task(self, task_id)

    def tasks(
        self,
        state: Optional[str] = None,
        model_type: Optional[str] = None,
        node: Optional[str] = None,
        limit: Optional[int] = None,
    ) -> list[dict[str, Any]]:
        """Recent tasks, newest first (`GET /tasks`)."""
        params = {k: v for k, v in dict(state=state, model_type=model_type, node=node, limit=limit).items() if v is not None}
        return self._request("GET", "/tasks", params=params)["tasks"]

    def purge(self) -> int:
        """Revokes every pending task (`DELETE /queue`, admin); returns how many."""
        return self._request("DELETE", "/queue")["purged"]

    # ---- data sets and models

    def upload_csv(self, path: Union[str, Path], target: str, name: Optional[str] = None) -> dict[str, Any]:
        """Uploads a CSV file with a header line (`POST /datasets`); `target` is the column to
        predict. Returns the data set (its `id` goes in a request's `dataset`)."""
        path = Path(path)
        answer = self._request(
            "POST",
            "/datasets",
            params={"name": name or path.stem, "target": target},
            content=path.read_bytes(),
            headers={"Content-Type": "text/csv"},
        )
        return {"id": answer["dataset_id"], **answer["dataset"]}

    def datasets(self) -> dict[str, Any]:
        """Uploaded data sets and the built-in names (`GET /datasets`)."""
        return self._request("GET", "/datasets")

    def predict(self, task_id: str, rows: Sequence[Sequence[float]]) -> list[float]:
        """Predictions of a finished task's model, one per row (`POST /models/{id}/predict`)."""
        answer = self._request("POST", f"/models/{task_id}/predict", json={"rows": [list(r) for r in rows]})
        return answer["predictions"]

    # ---- the model registry

    def register_model(self, name: str, task_id: str) -> dict[str, Any]:
        """Registers a finished task's model as `name`'s next version (`POST /models`); the
        version, with its number, metrics and spec. It never expires with the task."""
        return self._request("POST", "/models", json={"name": name, "task_id": task_id})["version"]

    def models(self) -> list[dict[str, Any]]:
        """Every registered model: newest version and aliases (`GET /models`)."""
        return self._request("GET", "/models")["models"]

    def model(self, name: str) -> dict[str, Any]:
        """A registered model with every version (`GET /models/{name}`)."""
        return self._request("GET", f"/models/{name}")

    def set_alias(self, name: str, alias: str, version: int) -> dict[str, Any]:
        """Points `alias` (`production`, `staging`, ...) of `name` at `version`."""
        return self._request("PUT", f"/models/{name}/aliases/{alias}", json={"version": version})

    def delete_model_version(self, name: str, version: int) -> None:
        """Deletes a version (refused with `Conflict` while an alias points at it)."""
        self._request("DELETE", f"/models/{name}/versions/{version}")

    def predict_model(
        self,
        name: str,
        rows: Sequence[Sequence[float]],
        *,
        version: Optional[int] = None,
        alias: Optional[str] = None,
    ) -> list[float]:
        """Predictions of a registered model: its newest version, or `version`, or `alias`."""
        if version is not None:
            path = f"/models/{name}/versions/{version}/predict"
        elif alias is not None:
            path = f"/models/{name}/aliases/{alias}/predict"
        else:
            path = f"/models/{name}/predict"
        return self._request("POST", path, json={"rows": [list(r) for r in rows]})["predictions"]

    # ---- the cluster

    def health(self) -> dict[str, Any]:
        """The cluster's health (`GET /cluster/health`). Celery: `inspect().ping()`."""
        return self._request("GET", "/cluster/health")

    def nodes(self) -> list[dict[str, Any]]:
        """Every node with its trainers (`GET /cluster/nodes`). Celery: `inspect().stats()`."""
        return self._request("GET", "/cluster/nodes")["nodes"]

    # ---- schedules (Celery beat)

    def create_schedule(
        self,
        name: str,
        cron: str,
        model_type: str,
        request: Optional[dict[str, Any]] = None,
        *,
        timezone: str = "UTC",
        missed: str = "run_once",
        misfire_grace_s: Optional[float] = None,
        paused: bool = False,
    ) -> dict[str, Any]:
        """A periodic training (`POST /schedules`, admin). Celery: a `beat_schedule` entry."""
        body: dict[str, Any] = {
            "name": name,
            "cron": cron,
            "timezone": timezone,
            "model_type": model_type,
            "request": request or {},
            "missed": missed,
            "paused": paused,
        }
        if misfire_grace_s is not None:
            body["misfire_grace_s"] = misfire_grace_s
        return self._request("POST", "/schedules", json=body)["schedule"]

    def schedules(self) -> list[dict[str, Any]]:
        return self._request("GET", "/schedules")["schedules"]

    def schedule(self, name: str) -> dict[str, Any]:
        return self._request("GET", f"/schedules/{name}")["schedule"]

    def pause_schedule(self, name: str) -> None:
        self._request("POST", f"/schedules/{name}/pause")

    def resume_schedule(self, name: str) -> None:
        self._request("POST", f"/schedules/{name}/resume")

    def delete_schedule(self, name: str) -> None:
        self._request("DELETE", f"/schedules/{name}")

    # ---- event streams

    def _events(self, path: str, last_event_id: Optional[str], reconnects: int) -> Iterator[Event]:
        """Server-Sent Events of `path`; after a dropped connection, reconnects with
        `Last-Event-ID` (up to `reconnects` times in a row), so no event is lost or repeated."""
        failures = 0
        while True:
            headers = {"Accept": "text/event-stream"}
            if last_event_id:
                headers["Last-Event-ID"] = last_event_id
            try:
                with self._http.stream("GET", path, headers=headers, timeout=httpx.Timeout(30.0, read=None)) as response:
                    if response.status_code >= 400:
                        response.read()
                        try:
                            body = response.json()
                        except ValueError:
                            body = response.text
                        raise from_response(response.status_code, body, response.headers.get("retry-after"))
                    for event in _parse_sse(response.iter_lines()):
                        failures = 0
                        if event.id:
                            last_event_id = event.id
                        yield event
                return  # the server ended the stream
            except (httpx.TransportError, httpx.RemoteProtocolError):
                failures += 1
                if failures > reconnects:
                    raise
                time.sleep(min(0.2 * 2**failures, 5.0))

    def events(self, last_event_id: Optional[str] = None, reconnects: int = 10) -> Iterator[Event]:
        """Every task's events from now on (`GET /events`), never ending on its own."""
        return self._events("/events", last_event_id, reconnects)


def _parse_sse(lines: Iterator[str]) -> Iterator[Event]:
    """Server-Sent Events from the lines of a stream (comments and keep-alives skipped)."""
    event_id: Optional[str] = None
    kind = "message"
    data: list[str] = []
    for line in lines:
        if line == "":
            if data:
                text = "\n".join(data)
                try:
                    payload = json.loads(text)
                except ValueError:
                    payload = {"text": text}
                yield Event(event_id, kind, payload)
            kind, data = "message", []
            continue
        if line.startswith(":"):
            continue
        field, _, value = line.partition(":")
        value = value[1:] if value.startswith(" ") else value
        if field == "id":
            event_id = value
        elif field == "event":
            kind = value
        elif field == "data":
            data.append(value)


class Task:
    """One training. Celery: `AsyncResult`."""

    def __init__(self, client: Client, task_id: str) -> None:
        self.client = client
        self.id = task_id

    def __repr__(self) -> str:
        return f"Task({self.id!r})"

    def status(self) -> dict[str, Any]:
        """`{"task_id", "state", "progress"}` (`GET /task/{id}/status`). Celery: `.state`,
        `.info`."""
        return self.client._request("GET", f"/task/{self.id}/status")

    @property
    def state(self) -> str:
        return self.status()["state"]

    def info(self) -> dict[str, Any]:
        """Everything about the task: request, attempts, node, trainer (`GET /task/{id}`)."""
        return self.client._request("GET", f"/task/{self.id}")

    def result(self) -> dict[str, Any]:
        """The answer of `GET /task/{id}/result`: `state`, and `result` or `error`."""
        return self.client._request("GET", f"/task/{self.id}/result")

    def cancel(self) -> dict[str, Any]:
        """Revokes a pending task, or stops a running one at its next batch. Celery:
        `.revoke(terminate=True)`."""
        return self.client._request("POST", f"/task/{self.id}/cancel")

    def wait(self, timeout: Optional[float] = None) -> dict[str, Any]:
        """Waits for the end, following the task's events (no polling), and returns the result
        (`{"success", "message", "model_type", "metrics", ...}`). Raises `TaskFailed` when it
        ends FAILURE or REVOKED, `WaitTimeout` past `timeout` seconds. Celery: `.get(timeout)`."""
        deadline = None if timeout is None else time.monotonic() + timeout

        def remaining() -> Optional[float]:
            left = None if deadline is None else deadline - time.monotonic()
            if left is not None and left <= 0:
                raise WaitTimeout(504, "wait_timeout", f"task {self.id} did not end within {timeout} s", task_id=self.id)
            return left

        last_id: Optional[str] = None
        while True:
            try:
                for event in self._events_once(last_id, remaining()):
                    last_id = event.id or last_id
                    if event.data.get("state") in TERMINAL_STATES:
                        break
                    remaining()
            except httpx.ReadTimeout:
                continue
            except (httpx.TransportError, httpx.RemoteProtocolError):
                time.sleep(0.2)
                continue
            answer = self.result()
            state = answer.get("state")
            if state == "SUCCESS":
                return answer["result"]
            if state in TERMINAL_STATES:
                raise TaskFailed(self.id, state, answer.get("error"))

    def _events_once(self, last_id: Optional[str], timeout: Optional[float]) -> Iterator[Event]:
        headers = {"Accept": "text/event-stream"}
        if last_id:
            headers["Last-Event-ID"] = last_id
        read = None if timeout is None else max(timeout, 0.1)
        with self.client._http.stream(
            "GET", f"/task/{self.id}/events", headers=headers, timeout=httpx.Timeout(30.0, read=read)
        ) as response:
            if response.status_code >= 400:
                response.read()
                raise from_response(response.status_code, response.json(), response.headers.get("retry-after"))
            yield from _parse_sse(response.iter_lines())

    def events(self, last_event_id: Optional[str] = None, reconnects: int = 10) -> Iterator[Event]:
        """The task's events from its first (or after `last_event_id`) until its end
        (`GET /task/{id}/events`); a dropped connection is resumed with `Last-Event-ID`."""
        return self.client._events(f"/task/{self.id}/events", last_event_id, reconnects)

    def progress(self) -> Iterator[dict[str, Any]]:
        """Each progress report (`{"current", "total", "percent", "message", "loss"}`) until the
        task ends."""
        for event in self.events():
            progress = event.data.get("progress")
            if event.event == "progress" and progress:
                yield progress
