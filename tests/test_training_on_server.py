"""Training, evaluation and registration against a real `mlflow server` on PostgreSQL."""

import shutil

import dagster as dg
import pytest

from facilflow_assets.environment import Environment
from facilflow_assets.evaluation.assets import EVALUATION_TAG, REPORT_FILE
from facilflow_assets.evaluation.report import EvaluationReport
from facilflow_assets.governance.audit import AuditTrail
from facilflow_assets.governance.stages import STAGE_TAG, Stage, move_to_stage
from facilflow_assets.registry import assets as registry_assets
from facilflow_assets.registry import versions as registry_versions
from facilflow_assets.resource_map import build_resources
from facilflow_assets.training.candidate import CANDIDATE_FILE, Candidate, CandidateError
from resources import MlflowResource, StorageResource
from tests.lifecycle import lifecycle
from tests.mlflow_server import mlflow_server

pytestmark = pytest.mark.slow

MODEL_NAME = "demo.flight_delay"
FLIGHT_DELAY = lifecycle()
KEYS = FLIGHT_DELAY.keys
# The copied training set's service: this home has no Feast registry to find it in.
SMALL_SEARCH = {
    "feature_service": "flight_delay_v1",
    "num_trials": 2,
    "max_rounds": 30,
    "grace_rounds": 10,
    "checkpoint_every": 10,
}
LIFECYCLE = [
    FLIGHT_DELAY.asset("trained_model"),
    FLIGHT_DELAY.asset("evaluation_report"),
    FLIGHT_DELAY.check("clears_thresholds"),
    FLIGHT_DELAY.asset("registered_model_version"),
]
EVALUATE_AND_REGISTER = [KEYS.evaluation_report, KEYS.registered_model_version]


@pytest.fixture(scope="module")
def on_server(tmp_path_factory, built_home):
    """A home with the demo's training set whose MLflow is a real server over HTTP."""
    root = tmp_path_factory.mktemp("server-training")
    home = root / "facilflow"
    training_set = StorageResource(home=str(home)).files(FLIGHT_DELAY.scope).training_set_path
    built = StorageResource(home=str(built_home.home)).files(FLIGHT_DELAY.scope)
    training_set("flight_delay_v1").parent.mkdir(parents=True)
    shutil.copy(built.training_set_path("flight_delay_v1"), training_set("flight_delay_v1"))
    with mlflow_server(root / "artifacts") as url:
        resources = build_resources(Environment.LOCAL, home=home)
        resources["mlflow"] = MlflowResource(tracking_uri=url, artifact_root="mlflow-artifacts:/")
        with dg.instance_for_test() as instance:
            result = dg.materialize(
                LIFECYCLE,
                resources=resources,
                instance=instance,
                run_config={"ops": {FLIGHT_DELAY.op("trained_model"): {"config": SMALL_SEARCH}}},
            )
            yield resources, result, instance


def _metadata(result, key: dg.AssetKey) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key == key]
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


def _materialize(resources, instance, keys, evaluation_config=None):
    return dg.materialize(
        LIFECYCLE,
        selection=keys,
        resources=resources,
        instance=instance,
        run_config={
            "ops": {FLIGHT_DELAY.op("evaluation_report"): {"config": evaluation_config or {}}}
        },
        raise_on_error=False,
    )


def test_the_server_keeps_the_run_its_trials_and_the_staged_version(on_server):
    resources, result, _ = on_server
    client = resources["mlflow"].client()
    trained = _metadata(result, KEYS.trained_model)
    run = client.get_run(trained["mlflow_run_id"])
    assert trained["mlflow_run"].startswith(resources["mlflow"].tracking_uri)
    assert [m.step for m in client.get_metric_history(run.info.run_id, "valid_auc")] == list(
        range(1, int(run.data.params["num_boost_round"]) + 1)
    )
    assert {a.path for a in client.list_artifacts(run.info.run_id)} >= {
        "evaluation",
        "plots",
        "training.log",
    }
    trials = client.search_runs(
        [run.info.experiment_id], f"tags.`mlflow.parentRunId` = '{run.info.run_id}'"
    )
    assert len(trials) == 2
    assert "| trial-" in trained["trial_comparison"]
    version = client.get_model_version_by_alias(MODEL_NAME, "staging")
    assert (str(version.version), version.run_id) == ("1", run.info.run_id)
    assert version.tags[STAGE_TAG] == "Staging"
    registered = _metadata(result, KEYS.registered_model_version)
    assert registered["mlflow_model_version"].endswith(f"/#/models/{MODEL_NAME}/versions/1")


def test_a_candidate_below_the_thresholds_is_blocked_and_not_registered(on_server):
    resources, _, instance = on_server
    client = resources["mlflow"].client()
    before = client.search_model_versions(f"name = '{MODEL_NAME}'")
    result = _materialize(resources, instance, EVALUATE_AND_REGISTER, {"min_auc": 0.99})
    [check] = result.get_asset_check_evaluations()
    assert not check.passed
    assert "below min_auc 0.99" in check.description
    materialized = {e.asset_key for e in result.get_asset_materialization_events()}
    assert materialized == {KEYS.evaluation_report}  # the blocking check stopped registration
    assert len(client.search_model_versions(f"name = '{MODEL_NAME}'")) == len(before)


def test_with_a_version_in_production_the_baseline_is_that_version(on_server):
    resources, _, instance = on_server
    client = resources["mlflow"].client()
    move_to_stage(client, MODEL_NAME, "1", Stage.PRODUCTION)
    result = _materialize(resources, instance, EVALUATE_AND_REGISTER)
    evaluation = _metadata(result, KEYS.evaluation_report)
    assert evaluation["baseline"] == "production v1"
    # The candidate is the Production model itself here: same scores, no lift.
    assert evaluation["baseline_auc"] == pytest.approx(evaluation["auc"])
    assert evaluation["auc_lift"] == pytest.approx(0.0, abs=1e-12)
    registered = _metadata(result, KEYS.registered_model_version)
    assert (registered["version"], registered["stage"]) == ("1", "Production")
    assert client.get_model_version(MODEL_NAME, "1").tags[STAGE_TAG] == "Production"


def test_a_registration_that_fails_part_way_leaves_no_version(on_server, monkeypatch):
    resources, _, _ = on_server
    client = resources["mlflow"].client()
    models = resources["storage"].files(FLIGHT_DELAY.scope).models_dir
    candidate = Candidate.read(models / CANDIDATE_FILE)
    report = EvaluationReport.read(models / REPORT_FILE)
    name = "demo.flight_delay_rollback"
    client.create_registered_model(name)

    # Failure injected: the alias store refusing is not something a real server does on cue.
    def refuse(*_args, **_kwargs):
        raise RuntimeError("alias store unavailable")

    monkeypatch.setattr(registry_versions, "transition", refuse)
    audit = AuditTrail(client, "/demo/flight_delay_rollback/audit")
    with pytest.raises(RuntimeError, match="alias store unavailable"):
        registry_assets.register_and_stage(client, audit, name, candidate, report)
    assert client.search_model_versions(f"name = '{name}'") == []


def test_a_run_tagged_promote_is_registered_then_evaluated_into_staging_once(on_server):
    resources, result, instance = on_server
    client = resources["mlflow"].client()
    run_id = _metadata(result, KEYS.trained_model)["mlflow_run_id"]
    # As if the run had never been evaluated nor registered.
    client.delete_tag(run_id, EVALUATION_TAG)
    for version in client.search_model_versions(f"run_id = '{run_id}'"):
        client.delete_model_version(MODEL_NAME, version.version)
    client.set_tag(run_id, "promote", "true")
    needed = {key: resources[key] for key in ("mlflow", "events")}
    promote_tag_sensor = FLIGHT_DELAY.sensor("promote_tag_sensor")
    with dg.build_sensor_context(resources=needed, instance=instance) as context:
        first = promote_tag_sensor(context)
    [run_request] = first.run_requests
    assert run_request.run_key == f"promote-run:{run_id}"
    [registered] = client.search_model_versions(f"run_id = '{run_id}'")
    assert registered.tags[STAGE_TAG] == "None"
    assert run_request.tags["facilflow/version"] == str(registered.version)
    with dg.build_sensor_context(
        resources=needed, instance=instance, cursor=first.cursor
    ) as context:
        assert promote_tag_sensor(context).run_requests == []

    launched = FLIGHT_DELAY.job("candidate_job", resources).execute_in_process(
        run_config=run_request.run_config, instance=instance, tags=run_request.tags
    )
    assert launched.success
    assert client.get_run(run_id).data.tags[EVALUATION_TAG] == "passed"
    staged = client.get_model_version(MODEL_NAME, registered.version)
    assert staged.tags[STAGE_TAG] == "Staging" and "facilflow.holdout_auc" in staged.tags
    assert "Holdout AUC" in staged.description
    assert [v.version for v in client.search_model_versions(f"run_id = '{run_id}'")] == [
        registered.version
    ]
    with dg.build_sensor_context(resources=needed, instance=instance) as context:
        assert promote_tag_sensor(context).run_requests == []  # evaluated: done


def test_a_run_that_is_not_a_training_run_cannot_be_a_candidate(on_server):
    resources, _, _ = on_server
    client = resources["mlflow"].client()
    stray = client.create_run(
        resources["mlflow"].ensure_experiment(FLIGHT_DELAY.scope).experiment_id
    )
    with pytest.raises(CandidateError, match="is not a FacilFlow training run: it lacks"):
        Candidate.from_run(client, stray.info.run_id)
