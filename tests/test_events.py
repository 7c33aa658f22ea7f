"""Lifecycle events: the envelope and its schema, the outbox on sqlite and PostgreSQL, and the
relay to a real Kafka-compatible broker process, including while it is down."""

import json
import threading
import time
from datetime import UTC, datetime

import boto3
import dagster as dg
import jsonschema
import pytest
from click.testing import CliRunner
from moto.server import ThreadedMotoServer

from facilflow_assets.cli import main
from facilflow_assets.environment import Environment
from facilflow_assets.events.envelope import (
    SCHEMA_FILE,
    EventError,
    EventType,
    LifecycleEvent,
    json_schema,
    lifecycle_event,
    schema_text,
)
from facilflow_assets.events.local_broker import LocalBroker
from facilflow_assets.events.outbox import Outbox
from facilflow_assets.events.reader import EventReader
from facilflow_assets.events.relay import relay
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from resources import EventsResource
from sensors.event_relay import event_relay_sensor
from tests.mlflow_server import free_port, postgres_database

TOPIC = "facilflow.lifecycle"
SCOPE = ModelScope("acme", "flight_delay")
IDENTITY = {"tenant": "acme", "use_case": "flight_delay", "model": "acme.flight_delay"}


def promoted(
    version: str, once_per: str | None = None, scope: ModelScope = SCOPE
) -> LifecycleEvent:
    """A promotion of `scope`'s model, built as the lifecycle builds its events."""
    payload = {
        "stage": "Production",
        "by": "dave",
        "comment": "ok",
        "previous_version": None,
        "rollback": False,
    }
    return scope.event(EventType.MODEL_PROMOTED, payload, version=version, once_per=once_per)


def read_all(bootstrap: str) -> tuple[list[LifecycleEvent], int]:
    """Every distinct event on the topic, and how many messages carried repeats."""
    with EventReader(bootstrap, TOPIC) as reader:
        events = list(reader.events(idle_s=1.5))
        return events, reader.duplicates


@pytest.fixture
def outbox(tmp_path) -> Outbox:
    return Outbox(f"sqlite:///{tmp_path / 'events' / 'outbox.db'}")


def test_the_committed_json_schema_is_the_envelope_s_and_validates_events():
    assert SCHEMA_FILE.read_text() == schema_text(), "regenerate lifecycle_event.schema.json"
    validator = jsonschema.Draft202012Validator(json_schema())
    event = json.loads(promoted("3").to_json())
    validator.validate(event)
    assert {key: event[key] for key in IDENTITY} == IDENTITY  # the scope names the model
    event["payload"]["rollback"] = "yes"
    with pytest.raises(jsonschema.ValidationError, match="'yes' is not of type 'boolean'"):
        validator.validate(event)
    del event["tenant"]
    with pytest.raises(jsonschema.ValidationError, match="'tenant' is a required property"):
        validator.validate({**event, "payload": json.loads(promoted("3").to_json())["payload"]})


def test_a_malformed_payload_is_refused_before_it_reaches_the_outbox(outbox):
    with pytest.raises(EventError, match="MODEL_PROMOTED payload: by: Field required"):
        lifecycle_event(
            EventType.MODEL_PROMOTED,
            {"stage": "Production", "comment": "", "previous_version": None, "rollback": False},
            **IDENTITY,
        )
    with pytest.raises(EventError, match="reviewer: Extra inputs are not permitted"):
        lifecycle_event(
            EventType.MODEL_TRANSITION_APPROVED,
            {
                "stage": "Production",
                "requested_by": "carol",
                "approved_by": "dave",
                "comment": "",
                "reviewer": "dave",
            },
            **IDENTITY,
        )
    assert outbox.waiting_count() == 0
    with pytest.raises(EventError, match="not a lifecycle event: type"):
        LifecycleEvent.from_json(promoted("1").to_json().replace("MODEL_PROMOTED", "MODEL_GONE"))


def test_an_event_emitted_twice_is_stored_once_on_sqlite_and_on_postgres(outbox):
    with postgres_database() as url:
        for store in (outbox, Outbox(url)):
            first = promoted("4", once_per="2026-11-22T10:00:00Z")
            again = promoted("4", once_per="2026-11-22T10:00:00Z")
            other = promoted("5")
            # The same promotion of another tenant's model on the shared outbox: its own event.
            elsewhere = promoted("4", "2026-11-22T10:00:00Z", ModelScope("demo", "flight_delay"))
            assert first.event_id == again.event_id and first.time != again.time
            assert elsewhere.event_id != first.event_id
            assert store.append([first, other]) == 2
            assert store.append([again]) == 0
            assert store.append([elsewhere, again]) == 1
            waiting = store.waiting(10)
            assert [e.event_id for e in waiting] == [
                str(e.event_id) for e in (first, other, elsewhere)
            ]
            assert LifecycleEvent.from_json(waiting[0].body) == first
            store.engine.dispose()


def test_relay_publishes_in_order_and_marks_what_the_broker_acknowledged(outbox, broker):
    events = [promoted(str(n)) for n in range(1, 51)]
    outbox.append(events)
    report = relay(outbox, broker.bootstrap_servers, TOPIC)
    assert (report.published, report.failed, report.waiting) == (50, 0, 0)
    received, repeats = read_all(broker.bootstrap_servers)
    assert [e.event_id for e in received] == [e.event_id for e in events]
    assert repeats == 0
    assert relay(outbox, broker.bootstrap_servers, TOPIC).published == 0


def test_events_wait_while_the_broker_is_down_and_each_arrives_once_after(outbox, broker):
    broker.stop()
    outbox.append([promoted(str(n)) for n in range(1, 21)])
    down = relay(outbox, broker.bootstrap_servers, TOPIC, timeout_s=2)
    assert (down.published, down.waiting) == (0, 20) and "broker unreachable" in down.error
    broker.start()
    # A relay that dies between sending and marking sends again on its next pass.
    stored = outbox.waiting(5)
    assert relay(outbox, broker.bootstrap_servers, TOPIC).published == 20
    outbox._update([e.seq for e in stored], published_at=None)
    assert relay(outbox, broker.bootstrap_servers, TOPIC).published == 5
    received, repeats = read_all(broker.bootstrap_servers)
    assert sorted(int(e.version) for e in received) == list(range(1, 21))
    assert repeats == 5


def test_the_relay_sensor_and_the_cli_report_waiting_events(tmp_path, outbox, broker):
    outbox.append([promoted("7"), promoted("8")])
    without_broker = EventsResource(outbox_url=outbox.url)
    with dg.build_sensor_context(resources={"events": without_broker}) as context:
        skip = event_relay_sensor(context)
    assert "no broker configured: 2 event(s) wait in the outbox" in skip.skip_message
    with_broker = EventsResource(outbox_url=outbox.url, bootstrap_servers=broker.bootstrap_servers)
    with dg.build_sensor_context(resources={"events": with_broker}) as context:
        assert event_relay_sensor(context).skip_message == "published 2, 0 waiting"

    home = tmp_path / "home"
    runner = CliRunner()
    environment = {"KAFKA_BOOTSTRAP_SERVERS": broker.bootstrap_servers}
    out = runner.invoke(main, ["--home", str(home), "events", "tail"], env=environment)
    assert out.exit_code == 0, out.output
    lines = out.output.splitlines()
    assert len(lines) == 2 and "MODEL_PROMOTED" in lines[0] and "acme.flight_delay v7" in lines[0]
    out = runner.invoke(main, ["--home", str(home), "events", "tail", "--json"], env=environment)
    assert [json.loads(line)["version"] for line in out.output.splitlines()] == ["7", "8"]
    no_broker = {"KAFKA_BOOTSTRAP_SERVERS": ""}
    out = runner.invoke(main, ["--home", str(home), "events", "relay"], env=no_broker)
    assert out.exit_code == 1 and "no broker configured; 0 event(s) wait" in out.output


def test_with_no_broker_the_cli_tails_the_outbox_and_relay_fails(tmp_path):
    """After the demo no broker runs: `events tail` reads what the outbox recorded,
    published or not, and says so; `events relay` cannot do its job and exits 1."""
    home = tmp_path / "home"
    recorded = Outbox(build_resources(Environment.LOCAL, home=home)["events"].outbox_url)
    recorded.append([promoted("7"), promoted("8")])
    recorded.mark_published([recorded.waiting(1)[0].seq])  # one went out, one still waits
    runner, no_broker = CliRunner(), {"KAFKA_BOOTSTRAP_SERVERS": ""}
    out = runner.invoke(main, ["--home", str(home), "events", "tail"], env=no_broker)
    assert out.exit_code == 0, out.output
    assert "reading the outbox" in out.stderr
    lines = out.stdout.splitlines()
    assert [
        ("MODEL_PROMOTED" in line, "acme.flight_delay v" + v in line)
        for line, v in zip(lines, "78", strict=True)
    ] == [(True, True)] * 2
    only_new = runner.invoke(main, ["--home", str(home), "events", "tail", "--new"], env=no_broker)
    assert only_new.exit_code == 0 and only_new.stdout == ""
    out = runner.invoke(main, ["--home", str(home), "events", "relay"], env=no_broker)
    assert out.exit_code == 1 and "no broker configured; 1 event(s) wait" in out.output


BURST = 10_000


def relay_until_empty(outbox: Outbox, broker: LocalBroker) -> None:
    deadline = time.monotonic() + 150
    while outbox.waiting_count() and time.monotonic() < deadline:
        report = relay(outbox, broker.bootstrap_servers, TOPIC, batch_size=500, timeout_s=3)
        if report.error:
            time.sleep(0.5)


@pytest.mark.slow
def test_a_broker_killed_in_a_burst_of_ten_thousand_events_loses_none(tmp_path, outbox):
    """Tansu keeps its log in S3 (moto's server on loopback), as a Kafka broker keeps it on
    disk, and is killed with SIGKILL while the relay publishes, then started again. Tansu
    can lose the batch it acknowledged as it died (seen here: 500 events); the outbox keeps
    every event, so sending the burst's time range again completes the topic."""
    port = free_port()
    s3 = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    s3.start()
    aws = {
        "AWS_ACCESS_KEY_ID": "test",
        "AWS_SECRET_ACCESS_KEY": "test",
        "AWS_DEFAULT_REGION": "us-east-1",
        "AWS_ALLOW_HTTP": "true",
        "AWS_ENDPOINT": f"http://127.0.0.1:{port}",
    }
    boto3.client(
        "s3",
        endpoint_url=aws["AWS_ENDPOINT"],
        region_name="us-east-1",
        aws_access_key_id="test",
        aws_secret_access_key="test",
    ).create_bucket(Bucket="tansu")
    broker = LocalBroker(tmp_path / "broker.log", storage="s3://tansu/", env=aws).start()
    try:
        burst_started = datetime.now(UTC)
        outbox.append([promoted(str(n)) for n in range(BURST)])
        relayed = threading.Thread(target=relay_until_empty, args=(outbox, broker))
        relayed.start()
        deadline = time.monotonic() + 60
        while outbox.waiting_count() > BURST * 0.7 and time.monotonic() < deadline:
            time.sleep(0.05)
        assert 0 < outbox.waiting_count() < BURST, "the kill must land inside the burst"
        broker.stop(kill=True)
        time.sleep(1)
        broker.start()
        relayed.join(timeout=180)
        assert outbox.waiting_count() == 0
        assert outbox.republish(burst_started) == BURST
        relay_until_empty(outbox, broker)
        received, repeats = read_all(broker.bootstrap_servers)
        assert sorted(int(e.version) for e in received) == list(range(BURST))
        assert repeats >= BURST - 500  # the second pass, dropped by event id
    finally:
        broker.stop()
        s3.stop()
