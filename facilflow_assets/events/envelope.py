"""The lifecycle event: a versioned JSON envelope around a payload whose shape its type fixes.

Every event carries who it concerns (tenant, use case, model, version), where it happened
(the Dagster run) and when; the payload holds what is particular to its type. Payloads are
checked against their type before an event is built, so a malformed one never reaches the
outbox.
"""

import json
import uuid
from datetime import UTC, datetime
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal

from pydantic import AwareDatetime, BaseModel, ConfigDict, Field, ValidationError

SCHEMA_VERSION = 1
SCHEMA_FILE = Path(__file__).with_name("lifecycle_event.schema.json")
# Event ids derived from what an event records, so a step that runs twice emits it once.
_EVENT_NAMESPACE = uuid.UUID("6f1d2a8e-53c4-4b0e-9a57-0c1f1c4be8d1")


class EventType(StrEnum):
    MODEL_TRAINING_STARTED = "MODEL_TRAINING_STARTED"
    MODEL_TRAINING_COMPLETED = "MODEL_TRAINING_COMPLETED"
    MODEL_REGISTERED = "MODEL_REGISTERED"
    MODEL_TRANSITION_REQUESTED = "MODEL_TRANSITION_REQUESTED"
    MODEL_TRANSITION_APPROVED = "MODEL_TRANSITION_APPROVED"
    MODEL_TRANSITION_REJECTED = "MODEL_TRANSITION_REJECTED"
    MODEL_PROMOTED = "MODEL_PROMOTED"
    MODEL_DEPLOYED = "MODEL_DEPLOYED"
    MODEL_DRIFT_DETECTED = "MODEL_DRIFT_DETECTED"
    MODEL_QUALITY_DEGRADED = "MODEL_QUALITY_DEGRADED"
    SERVING_SLA_BREACHED = "SERVING_SLA_BREACHED"
    MODEL_GOVERNANCE_VIOLATION = "MODEL_GOVERNANCE_VIOLATION"


class EventError(ValueError):
    """An event that cannot be built, stored or read; the message names the field."""


class _Payload(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class TrainingStarted(_Payload):
    mlflow_run_id: str
    feature_service: str
    data_version: str
    num_trials: int = Field(ge=1)


class TrainingCompleted(_Payload):
    mlflow_run_id: str
    model_uri: str
    valid_auc: float | None = None  # a binary model's
    valid_rmse: float | None = None  # a regression's
    trials: int = Field(ge=0)
    failed_trials: int = Field(ge=0)


class Registered(_Payload):
    mlflow_run_id: str
    stage: str
    metrics: dict[str, float]


class TransitionRequested(_Payload):
    stage: str
    requested_by: str
    requested_at: str
    comment: str
    approvers: list[str] = Field(description="Who may decide: the people to notify.")


class TransitionApproved(_Payload):
    stage: str
    requested_by: str
    approved_by: str
    comment: str


class TransitionRejected(_Payload):
    stage: str
    requested_by: str
    decided_by: str
    comment: str
    reason: str = Field(description="Why FacilFlow refused the decision; '' for a rejection.")


class Promoted(_Payload):
    stage: str
    by: str
    comment: str
    previous_version: str | None
    rollback: bool


class Deployed(_Payload):
    url: str
    challenger_version: str | None
    challenger_share: float = Field(ge=0, le=1)


class DriftDetected(_Payload):
    kind: Literal["feature", "prediction"]
    partition: str
    drift_share: float = Field(ge=0, le=1)
    drifted_columns: list[str]
    report: str = Field(description="Where the Evidently report is.")


class QualityDegraded(_Payload):
    partition: str = Field(description="The day whose outcomes were judged.")
    metric: str
    value: float = Field(description="The metric on the day's scored rows with an outcome.")
    holdout_value: float = Field(description="The same metric on the version's holdout.")
    max_degradation: float = Field(ge=0, description="The relative margin allowed.")
    labelled_rows: int = Field(ge=1)
    evaluation_run: str = Field(description="The MLflow run that evaluated the version.")


class SlaBreached(_Payload):
    window_start: str
    window_end: str
    requests: int = Field(ge=1)
    error_rate: float = Field(ge=0, le=1)
    max_error_rate: float = Field(ge=0, le=1)
    p95_ms: float = Field(ge=0)
    p95_sla_ms: float = Field(gt=0)
    rps: float | None = Field(default=None, ge=0, description="Requests per second served.")
    min_rps: float | None = Field(default=None, description="The throughput floor, if any.")
    breaches: list[str] = Field(
        description="What was breached: latency, errors, throughput, or several."
    )


class GovernanceViolation(_Payload):
    check: str = Field(description="What found it: a sensor, the promotion job or a loader.")
    problem: str = Field(description="What does not match the audit trail; not acted upon.")


PAYLOADS: dict[EventType, type[_Payload]] = {
    EventType.MODEL_TRAINING_STARTED: TrainingStarted,
    EventType.MODEL_TRAINING_COMPLETED: TrainingCompleted,
    EventType.MODEL_REGISTERED: Registered,
    EventType.MODEL_TRANSITION_REQUESTED: TransitionRequested,
    EventType.MODEL_TRANSITION_APPROVED: TransitionApproved,
    EventType.MODEL_TRANSITION_REJECTED: TransitionRejected,
    EventType.MODEL_PROMOTED: Promoted,
    EventType.MODEL_DEPLOYED: Deployed,
    EventType.MODEL_DRIFT_DETECTED: DriftDetected,
    EventType.MODEL_QUALITY_DEGRADED: QualityDegraded,
    EventType.SERVING_SLA_BREACHED: SlaBreached,
    EventType.MODEL_GOVERNANCE_VIOLATION: GovernanceViolation,
}


class LifecycleEvent(BaseModel):
    """The envelope; `payload` is the JSON of the type's payload model."""

    model_config = ConfigDict(extra="forbid", frozen=True)

    schema_version: Literal[1] = SCHEMA_VERSION
    event_id: uuid.UUID
    type: EventType
    time: AwareDatetime
    tenant: str
    use_case: str
    model: str
    version: str | None = None
    dagster_run_id: str | None = None
    payload: dict[str, Any]

    @property
    def key(self) -> str:
        """The message key: events of one model keep their order on the topic."""
        return f"{self.tenant}/{self.model}"

    def to_json(self) -> str:
        return self.model_dump_json()

    @classmethod
    def from_json(cls, text: str | bytes) -> "LifecycleEvent":
        try:
            event = cls.model_validate_json(text)
            PAYLOADS[event.type].model_validate(event.payload)
        except ValidationError as error:
            raise EventError(f"not a lifecycle event: {_fields(error)}") from None
        return event


def lifecycle_event(
    event_type: EventType,
    payload: _Payload | dict[str, Any],
    *,
    tenant: str,
    use_case: str,
    model: str,
    version: str | None = None,
    dagster_run_id: str | None = None,
    once_per: str | None = None,
) -> LifecycleEvent:
    """Build an event, checking `payload` against `event_type`. With `once_per`, the event id
    is derived from the type, model, version and that key, so emitting again is a no-op."""
    try:
        checked = PAYLOADS[event_type].model_validate(
            payload.model_dump() if isinstance(payload, _Payload) else payload
        )
    except ValidationError as error:
        raise EventError(f"{event_type} payload: {_fields(error)}") from None
    version = None if version is None else str(version)
    identity = (
        uuid.uuid5(_EVENT_NAMESPACE, "|".join([event_type, model, version or "", once_per]))
        if once_per is not None
        else uuid.uuid4()
    )
    return LifecycleEvent(
        event_id=identity,
        type=event_type,
        time=datetime.now(UTC),
        tenant=tenant,
        use_case=use_case,
        model=model,
        version=version,
        dagster_run_id=dagster_run_id,
        payload=checked.model_dump(mode="json"),
    )


def _fields(error: ValidationError) -> str:
    return "; ".join(
        f"{'.'.join(str(part) for part in problem['loc']) or 'event'}: {problem['msg']}"
        for problem in error.errors()
    )


def json_schema() -> dict[str, Any]:
    """JSON Schema (2020-12) of the envelope, with each type's payload bound to its type."""
    schema = LifecycleEvent.model_json_schema()
    definitions = schema.setdefault("$defs", {})
    rules = []
    for event_type, model in PAYLOADS.items():
        definitions[model.__name__] = model.model_json_schema()
        rules.append(
            {
                "if": {"properties": {"type": {"const": event_type.value}}},
                "then": {"properties": {"payload": {"$ref": f"#/$defs/{model.__name__}"}}},
            }
        )
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "$id": "https://facilflow.dev/schemas/lifecycle_event/v1.json",
        **schema,
        "allOf": rules,
    }


def schema_text() -> str:
    return json.dumps(json_schema(), indent=2, sort_keys=True) + "\n"
