"""The Python client against real nodes (see conftest.py): every call, its errors, and event
streams that resume after a dropped connection."""

from __future__ import annotations

import socket
import threading
import time

import pytest

from trainyard import (
    Client,
    Conflict,
    InvalidRequest,
    NotFound,
    TaskFailed,
    Unauthorized,
    WaitTimeout,
)

from conftest import TOKEN


@pytest.fixture
def client(node):
    with Client(node.url) as c:
        yield c


def test_a_training_is_submitted_followed_and_its_model_predicts(client):
    task = client.submit("mlp", epochs=30, hidden_sizes=[16], seed=7)
    reports = list(task.progress())
    assert reports, "progress reports arrive before the end"
    assert all(0 <= r["percent"] <= 100 for r in reports)
    result = task.wait(timeout=120)
    assert result["success"] is True
    assert result["model_type"] == "mlp"
    assert {"train_r2", "test_r2"} <= set(result["metrics"])
    assert task.status()["state"] == "SUCCESS"
    assert task.result()["state"] == "SUCCESS"
    predictions = client.predict(task.id, [[0.5] * 8, [0.1] * 8])
    assert len(predictions) == 2
    assert any(t["task_id"] == task.id for t in client.tasks(state="SUCCESS"))


def test_many_trainings_are_submitted_in_one_batch(client):
    tasks = client.submit_many(
        [{"model_type": "linear", "epochs": 2, "seed": i} for i in range(3)]
        + [{"model_type": "xgboost", "gbdt": {"n_trees": 2}, "idempotency_key": "py-batch-1"}]
    )
    assert len(tasks) == 4 and len({t.id for t in tasks}) == 4
    for task in tasks:
        assert task.wait(timeout=120)["success"] is True
    assert tasks[3].info()["model_type"] == "gbdt"
    again = client.submit_many([{"model_type": "xgboost", "gbdt": {"n_trees": 2}, "idempotency_key": "py-batch-1"}])
    assert again[0].id == tasks[3].id
    before = len(client.tasks(limit=1000))
    with pytest.raises(InvalidRequest) as invalid:
        client.submit_many([{"model_type": "linear"}, {"model_type": "linear", "epochs": 0}])
    assert invalid.value.status == 422 and "items[1].epochs" in invalid.value.message
    assert "items[0]" not in invalid.value.message
    assert len(client.tasks(limit=1000)) == before, "a refused batch stores nothing"


def test_the_old_model_names_and_an_uploaded_csv_train(client, tmp_path):
    csv = tmp_path / "prices.csv"
    csv.write_text("a,b,price\n" + "".join(f"{i / 100},{i % 5},{2 * i / 100 + i % 5}\n" for i in range(200)))
    dataset = client.upload_csv(csv, target="price")
    assert dataset["rows"] == 200 and dataset["features"] == ["a", "b"]
    assert any(d["id"] == dataset["id"] for d in client.datasets()["datasets"])
    task = client.submit("xgboost", dataset=dataset["id"])
    result = task.wait(timeout=120)
    assert result["model_type"] == "xgboost"
    assert task.info()["model_type"] == "gbdt"
    assert len(client.predict(task.id, [[0.5, 1.0]])) == 1


def test_api_errors_raise_typed_exceptions_with_their_code(client):
    with pytest.raises(NotFound) as missing:
        client.submit("resnet")
    assert missing.value.code == "unknown_model_type"
    with pytest.raises(InvalidRequest) as invalid:
        client.submit("mlp", epochs=0, learning_rate=-1)
    assert invalid.value.status == 422 and invalid.value.code == "invalid_parameters"
    assert "epochs" in invalid.value.message and "learning_rate" in invalid.value.message
    with pytest.raises(NotFound) as unknown:
        client.task("9b2f2d7e-0000-4000-8000-000000000000").status()
    assert unknown.value.code == "task_not_found"
    with pytest.raises(WaitTimeout) as late:
        client.train("mlp", wait_s=0.2, epochs=100000)
    assert late.value.task_id
    client.task(late.value.task_id).cancel()


def test_a_cancelled_task_raises_when_waited_for(client):
    task = client.submit("mlp", epochs=100000)
    next(task.progress())  # it runs
    task.cancel()
    with pytest.raises(TaskFailed) as failed:
        task.wait(timeout=60)
    assert failed.value.state == "REVOKED"
    endless = client.submit("mlp", epochs=100000)
    with pytest.raises(WaitTimeout) as late:
        endless.wait(timeout=0.5)
    assert late.value.task_id == endless.id
    endless.cancel()


class CuttingProxy:
    """A TCP proxy to the node that cuts its first connection after `cut_after` bytes of the
    answer: a dropped event stream, as a load balancer's timeout would drop it."""

    def __init__(self, upstream_port: int, cut_after: int) -> None:
        self.upstream_port = upstream_port
        self.cut_after = cut_after
        self.connections = 0
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.port = self.listener.getsockname()[1]
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self) -> None:
        while True:
            downstream, _ = self.listener.accept()
            self.connections += 1
            limit = self.cut_after if self.connections == 1 else None
            upstream = socket.create_connection(("127.0.0.1", self.upstream_port))
            threading.Thread(target=self._pipe, args=(downstream, upstream, None), daemon=True).start()
            threading.Thread(target=self._pipe, args=(upstream, downstream, limit), daemon=True).start()

    @staticmethod
    def _pipe(source: socket.socket, sink: socket.socket, limit) -> None:
        sent = 0
        try:
            while True:
                data = source.recv(4096)
                if not data:
                    break
                if limit is not None and sent + len(data) >= limit:
                    sink.sendall(data[: max(limit - sent, 0)])
                    break
                sink.sendall(data)
                sent += len(data)
        except OSError:
            pass
        for s in (source, sink):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass
            s.close()


def test_an_event_stream_resumes_after_a_dropped_connection_without_gaps_or_repeats(client, node):
    task = client.submit("mlp", epochs=200, hidden_sizes=[32])
    task.wait(timeout=120)
    direct = list(task.events())
    assert direct[-1].data["state"] == "SUCCESS" and len(direct) > 3
    ids = [e.id for e in direct]
    assert len(set(ids)) == len(ids)

    proxy = CuttingProxy(int(node.url.rsplit(":", 1)[1]), cut_after=700)
    with Client(f"http://127.0.0.1:{proxy.port}") as through:
        resumed = list(through.task(task.id).events())
    assert proxy.connections >= 2, "the first connection was cut, and the client came back"
    assert [e.id for e in resumed] == ids

    after_two = list(task.events(last_event_id=ids[1]))
    assert [e.id for e in after_two] == ids[2:]


def test_the_cluster_and_schedules(client):
    assert client.health()["status"] == "healthy"
    nodes = client.nodes()
    assert nodes and len(nodes[0]["trainers"]) == 2
    schedule = client.create_schedule("nightly", "0 2 * * *", "pytorch", {"epochs": 5}, timezone="Europe/Paris")
    assert schedule["name"] == "nightly" and schedule["next_due_at"]
    assert [s["name"] for s in client.schedules()] == ["nightly"]
    client.pause_schedule("nightly")
    assert client.schedule("nightly")["paused"] is True
    client.resume_schedule("nightly")
    client.delete_schedule("nightly")
    assert client.schedules() == []


def test_a_token_is_sent_and_a_missing_one_refused(node_with_token):
    with Client(node_with_token.url) as anonymous:
        with pytest.raises(Unauthorized) as refused:
            anonymous.tasks()
        assert refused.value.code == "unauthorized"
    with Client(node_with_token.url, token=TOKEN) as client:
        task = client.submit("linear", epochs=2)
        assert task.wait(timeout=60)["success"] is True
        assert [e.data["state"] for e in task.events()][-1] == "SUCCESS"


def test_models_are_registered_aliased_and_predict_and_results_are_cached(client):
    task = client.submit("linear", epochs=5, seed=11, cache=True)
    task.wait(timeout=120)
    version = client.register_model("py-model", task.id)
    assert version["version"] == 1 and version["task_id"] == task.id
    client.set_alias("py-model", "production", 1)
    assert client.model("py-model")["aliases"] == {"production": 1}
    assert any(m["name"] == "py-model" for m in client.models())
    by_alias = client.predict_model("py-model", [[0.5] * 8], alias="production")
    assert by_alias == client.predict(task.id, [[0.5] * 8])
    assert client.predict_model("py-model", [[0.5] * 8], version=1) == by_alias
    with pytest.raises(Conflict) as aliased:
        client.delete_model_version("py-model", 1)
    assert aliased.value.code == "version_aliased"
    # The result is indexed for the cache just after it is written: a first try may miss.
    deadline = time.monotonic() + 30
    while True:
        copy = client.submit("linear", epochs=5, seed=11, cache=True)
        if copy.info().get("cached_from") or time.monotonic() > deadline:
            break
        copy.wait(timeout=120)
    assert copy.info()["cached_from"]
    assert copy.result()["state"] == "SUCCESS"
