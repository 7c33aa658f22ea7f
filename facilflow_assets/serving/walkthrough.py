"""The demo's serving path: a challenger model, the endpoint with a canary split, real
requests (one invalid), a burst that shows the split, and one day scored in batch."""

import uuid
from collections import Counter

import dagster as dg
import requests

from facilflow_assets.evaluation.assets import clears_thresholds, evaluation_report
from facilflow_assets.metadata import materialized_metadata
from facilflow_assets.registry.assets import registered_model_version
from facilflow_assets.serving.batch import batch_predictions
from facilflow_assets.serving.deployment import prediction_endpoint
from facilflow_assets.training.assets import trained_model

CHALLENGER_SHARE = 0.2
BURST = 200
BATCH_DAY = "2013-06-15"
# A second, smaller search. A challenger within two AUC points of Production is worth a
# canary: it goes to Staging, and the endpoint sends it a share of the traffic.
CHALLENGER_RUN = {
    "ops": {
        "training__trained_model": {
            "config": {"num_trials": 2, "max_rounds": 60, "grace_rounds": 20, "seed": 7}
        },
        "evaluation__evaluation_report": {"config": {"min_auc_lift": -0.02}},
    }
}


def _materialize(assets, resources, instance, **kwargs) -> dg.ExecuteInProcessResult:
    return dg.materialize(assets, resources=resources, instance=instance, **kwargs)


def serve_and_score(resources: dict, instance: dg.DagsterInstance) -> dict[str, object]:
    challenger = _materialize(
        [trained_model, evaluation_report, clears_thresholds, registered_model_version],
        resources,
        instance,
        run_config=CHALLENGER_RUN,
        raise_on_error=False,
    )
    staged = materialized_metadata(challenger, "registry/registered_model_version")
    share = CHALLENGER_SHARE if staged.get("stage") == "Staging" else 0.0
    deployed = materialized_metadata(
        _materialize(
            [prediction_endpoint],
            resources,
            instance,
            run_config={
                "ops": {"deployment__prediction_endpoint": {"config": {"challenger_share": share}}}
            },
        ),
        "deployment/prediction_endpoint",
    )
    url = deployed["url"]
    sample = deployed["sample_request"]
    session = requests.Session()
    shown = []
    incomplete = dict(list(sample.items())[:-1])  # a key missing: the endpoint refuses it
    for body in (sample, {**sample, "request_id": "demo-2"}, incomplete):
        response = session.post(url, json=body, timeout=30)
        shown.append({"status": response.status_code, **response.json()})
    served = Counter()
    for _ in range(BURST):
        body = {**sample, "request_id": str(uuid.uuid4())}
        served[session.post(url, json=body, timeout=30).json()["role"]] += 1
    batch = materialized_metadata(
        _materialize([batch_predictions], resources, instance, partition_key=BATCH_DAY),
        "deployment/batch_predictions",
    )
    return {
        "endpoint": url,
        "production_version": deployed["production_version"],
        "challenger_version": deployed["challenger_version"],
        "challenger_share": share,
        "requests": shown,
        "burst": BURST,
        "challenger_share_observed": served["challenger"] / BURST,
        "batch_day": BATCH_DAY,
        "batch_rows": batch["dagster/row_count"],
        "batch_model_version": batch["model_version"],
        "batch_score_mean": round(batch["score_mean"], 4),
    }
