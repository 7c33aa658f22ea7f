"""promote_tag_sensor: a training run tagged `promote=true` is registered, then evaluated
towards Staging."""

import json

import dagster as dg
from dagster._core.definitions.unresolved_asset_job_definition import UnresolvedAssetJobDefinition

from facilflow_assets.asset_keys import UseCaseKeys, op_name
from facilflow_assets.evaluation.assets import EVALUATION_TAG
from facilflow_assets.governance.transitions import stage_of
from facilflow_assets.registry.versions import (
    ensure_registered_model,
    existing_version,
    register_version,
    registered_event,
)
from facilflow_assets.scope import ModelScope
from facilflow_assets.training.candidate import Candidate, CandidateError
from facilflow_assets.use_case import UseCase
from resources import EventsResource, MlflowResource

PROMOTE_TAG = "promote"


def build_promote_tag_sensor(
    use_case: UseCase, scope: ModelScope, candidate_job: UnresolvedAssetJobDefinition
) -> dg.SensorDefinition:
    @dg.sensor(
        name=scope.definition_name("promote_tag_sensor"),
        job=candidate_job,
        minimum_interval_seconds=60,
        default_status=dg.DefaultSensorStatus.RUNNING,
        description="Runs tagged promote=true: registers each run's model (stage None), then "
        "evaluates it against the baseline and stages it if it clears the thresholds, once per "
        "run.",
    )
    def promote_tag_sensor(
        context: dg.SensorEvaluationContext, mlflow: MlflowResource, events: EventsResource
    ):
        return register_tagged_runs(context, use_case, scope, mlflow, events)

    return promote_tag_sensor


def register_tagged_runs(
    context: dg.SensorEvaluationContext,
    use_case: UseCase,
    scope: ModelScope,
    mlflow: MlflowResource,
    events: EventsResource,
):
    client = mlflow.client()
    experiment = mlflow.ensure_experiment(scope)
    tagged = client.search_runs(
        [experiment.experiment_id],
        filter_string=f"tags.`{PROMOTE_TAG}` = 'true' and attributes.status = 'FINISHED'",
        max_results=200,
    )
    # A run leaves the list once its evaluation is recorded on it.
    waiting = [run.info.run_id for run in tagged if EVALUATION_TAG not in run.data.tags]
    launched = set(json.loads(context.cursor)) if context.cursor else set()
    evaluation_op = op_name(UseCaseKeys(scope).evaluation_report)
    run_requests = []
    for run_id in waiting:
        if run_id in launched:
            continue
        try:
            candidate = Candidate.from_run(client, run_id)
        except CandidateError as error:
            context.log.warning(f"{PROMOTE_TAG}=true ignored: {error}")
            continue
        name = ensure_registered_model(client, scope, use_case.description)
        version = existing_version(client, name, run_id) or register_version(
            client, name, candidate
        )
        events.record([registered_event(scope, version, stage_of(version), {})])
        context.log.info(f"run {run_id} is {name} version {version.version}; evaluating it")
        run_requests.append(
            dg.RunRequest(
                run_key=f"promote-run:{run_id}",
                run_config={"ops": {evaluation_op: {"config": {"candidate_run_id": run_id}}}},
                tags={"facilflow/source_run": run_id, "facilflow/version": str(version.version)},
            )
        )
    return dg.SensorResult(run_requests=run_requests, cursor=json.dumps(sorted(waiting)))
