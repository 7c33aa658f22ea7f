"""The demo's serving path: a challenger model, the endpoint with a canary split, real
requests (one invalid), a burst that shows the split, and one day scored in batch."""

from __future__ import annotations

import uuid
from collections import Counter
from typing import TYPE_CHECKING, TypedDict

import requests

from facilflow_assets.asset_keys import UseCaseKeys, op_name
from facilflow_assets.demo.plan import DemoPlan
from facilflow_assets.metadata import materialized_metadata, metadata_number, metadata_value
from facilflow_assets.scope import ModelScope
from facilflow_assets.use_case import UseCase

if TYPE_CHECKING:
    from facilflow_assets.demo.run import Lifecycle


class Serving(TypedDict):
    """The endpoint, the requests sent, the split seen, a day scored in batch."""

    endpoint: str
    production_version: object
    challenger_version: object
    challenger_share: float
    sample_request: dict[str, object]
    requests: list[dict[str, object]]  # each answer with its HTTP status
    burst: int
    challenger_share_observed: float
    batch_day: str
    batch_rows: object
    batch_model_version: object
    batch_score_mean: float


def serve_and_score(
    lifecycle: Lifecycle, scope: ModelScope, use_case: UseCase, plan: DemoPlan
) -> Serving:
    keys = UseCaseKeys(scope)
    gate = "min_auc_lift" if use_case.task == "binary" else "min_rmse_lift"
    challenger = lifecycle.run(
        scope.definition_name("training_job"),
        run_config={
            "ops": {
                op_name(keys.trained_model): {"config": plan.challenger_training},
                op_name(keys.evaluation_report): {"config": {gate: plan.challenger_min_lift}},
            }
        },
        raise_on_error=False,
    )
    staged = materialized_metadata(challenger, keys.registered_model_version.to_user_string())
    share = plan.challenger_share if staged.get("stage") == "Staging" else 0.0
    deployed = materialized_metadata(
        lifecycle.run(
            scope.definition_name("deployment_job"),
            run_config={
                "ops": {op_name(keys.prediction_endpoint): {"config": {"challenger_share": share}}}
            },
        ),
        keys.prediction_endpoint.to_user_string(),
    )
    url = metadata_value(deployed, "url", str)
    sample = metadata_value(deployed, "sample_request", dict)
    session = requests.Session()
    shown: list[dict[str, object]] = []
    incomplete = dict(list(sample.items())[:-1])  # a key missing: the endpoint refuses it
    for body in (sample, {**sample, "request_id": "demo-2"}, incomplete):
        response = session.post(url, json=body, timeout=30)
        shown.append({"status": response.status_code, **response.json()})
    served: Counter[str] = Counter()
    for _ in range(plan.burst):
        body = {**sample, "request_id": str(uuid.uuid4())}
        served[session.post(url, json=body, timeout=30).json()["role"]] += 1
    day = use_case.demo_days.seen.isoformat()
    batch = materialized_metadata(
        lifecycle.run(
            scope.definition_name("monitoring_job"),
            partition_key=day,
            asset_selection=[keys.batch_predictions],
        ),
        keys.batch_predictions.to_user_string(),
    )
    return {
        "endpoint": url,
        "production_version": deployed["production_version"],
        "challenger_version": deployed["challenger_version"],
        "challenger_share": share,
        "sample_request": sample,
        "requests": shown,
        "burst": plan.burst,
        "challenger_share_observed": served["challenger"] / plan.burst,
        "batch_day": day,
        "batch_rows": batch["dagster/row_count"],
        "batch_model_version": batch["model_version"],
        "batch_score_mean": round(metadata_number(batch, "score_mean"), 4),
    }
