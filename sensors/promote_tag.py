"""promote_tag_sensor: a training run tagged `promote=true` is evaluated towards Staging."""

import json

import dagster as dg

from facilflow_assets.evaluation.assets import EVALUATION_TAG
from jobs import candidate_job
from resources import MlflowResource

PROMOTE_TAG = "promote"


@dg.sensor(
    job=candidate_job,
    minimum_interval_seconds=60,
    description="Runs tagged promote=true: evaluates each run's model against the baseline "
    "and registers it in Staging if it clears the thresholds, once per run.",
)
def promote_tag_sensor(context: dg.SensorEvaluationContext, mlflow: MlflowResource):
    client = mlflow.client()
    experiment = mlflow.ensure_experiment()
    tagged = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{PROMOTE_TAG}` = 'true' and attributes.status = 'FINISHED'",
        max_results=200,
    )
    # A run leaves the list once its evaluation is recorded on it.
    waiting = [run.info.run_id for run in tagged if EVALUATION_TAG not in run.data.tags]
    launched = set(json.loads(context.cursor)) if context.cursor else set()
    return dg.SensorResult(
        run_requests=[
            dg.RunRequest(
                run_key=f"promote-run:{run_id}",
                run_config={
                    "ops": {
                        "evaluation__evaluation_report": {"config": {"candidate_run_id": run_id}}
                    }
                },
                tags={"facilflow/source_run": run_id},
            )
            for run_id in waiting
            if run_id not in launched
        ],
        cursor=json.dumps(sorted(waiting)),
    )
