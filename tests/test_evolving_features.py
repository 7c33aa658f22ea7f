"""A use case whose features change while a version of it is in Production: the feature
service gets a new version, the old one stays served for the model that reads it, the
candidate is compared with Production on each model's own features over the same holdout
rows, and the old version goes once no model reads it. On the real weather of a warehouse
built for it, with real Feast, MLflow and Ray."""

from dataclasses import asdict
from typing import NamedTuple

import dagster as dg
import numpy as np
import polars as pl
import pytest
from sklearn.metrics import roc_auc_score

from facilflow_assets.asset_keys import op_name
from facilflow_assets.definitions import shared_definitions, use_case_definitions
from facilflow_assets.environment import Environment
from facilflow_assets.evaluation.report import EvaluationReport
from facilflow_assets.features.service_versions import FeatureVersionError
from facilflow_assets.governance.stages import Stage, move_to_stage
from facilflow_assets.resource_map import build_resources
from facilflow_assets.serving.endpoint import EndpointSpec, PredictionEndpoint
from facilflow_assets.serving.models import ModelLoadError, load, resolve
from facilflow_assets.serving.rollout import smoke_prediction
from facilflow_assets.training.dataset import TIME_COLUMN
from facilflow_assets.use_case import UseCase
from tests.lifecycle import lifecycle

pytestmark = pytest.mark.slow

RAIN = lifecycle("airport_rain")
SCOPE = RAIN.scope
MODEL = SCOPE.registered_model_name
RETIRED, ADDED = "visibility_min_3h", "wind_speed_max_6h"
# The assets from the feature table to a registered version, in the order they run.
THROUGH_REGISTRY = (
    "airport_weather",
    "feast_registry",
    "training_set",
    "trained_model",
    "evaluation_report",
    "registered_model_version",
)
# A small search, fitted in the step's process: the subject is the features, not the fit.
SEARCH = {"num_trials": 1, "max_rounds": 30, "grace_rounds": 10, "num_workers": 0}
# The check is not the subject here: any candidate that beats chance is registered.
LENIENT = {"min_auc": 0.55, "min_auc_lift": -1.0, "max_log_loss": 5.0}


def evolved(use_case: UseCase, window: str = "6h") -> UseCase:
    """airport_rain with one feature retired and one added, as its owner would edit it."""
    document = use_case.model_dump(mode="json")
    [table] = document["tables"]
    table["features"] = [f for f in table["features"] if f["name"] != RETIRED] + [
        {
            "name": ADDED,
            "kind": "rolling",
            "column": "wind_speed_mph",
            "stat": "max",
            "window": window,
        }
    ]
    table["expect"]["ranges"].pop(RETIRED)
    return UseCase.model_validate(document)


class Lifecycle:
    """One version of the use case's definitions, materialized against one home."""

    def __init__(self, use_case: UseCase, resources: dict, instance: dg.DagsterInstance):
        self.defs = use_case_definitions(use_case, SCOPE)
        self.resources, self.instance = resources, instance

    def asset(self, name: str) -> dg.AssetsDefinition:
        [found] = [a for a in self.defs.assets if a.key.path[-1] == name]
        return found

    def materialize(self, *names: str, raise_on_error: bool = True, **config):
        assets = [self.asset(n) for n in names]
        gates = [
            check
            for check in self.defs.asset_checks
            if any(key.name == "clears_thresholds" for key in check.check_keys)
        ]
        checks = gates if "evaluation_report" in names else []
        return dg.materialize(
            [*assets, *checks],
            resources=self.resources,
            instance=self.instance,
            run_config={
                "ops": {op_name(self.asset(n).key): {"config": c} for n, c in config.items()}
            },
            raise_on_error=raise_on_error,
        )


def _metadata(result, name: str) -> dict:
    [event] = [e for e in result.get_asset_materialization_events() if e.asset_key.path[-1] == name]
    return {k: v.value for k, v in event.event_specific_data.materialization.metadata.items()}


@pytest.fixture(scope="module")
def evolving(tmp_path_factory):
    """The warehouse built, version 1 trained on the file's features and put in
    Production, then the features changed and a candidate trained and evaluated on them."""
    home = tmp_path_factory.mktemp("evolving") / "facilflow"
    resources = build_resources(Environment.LOCAL, home=home)
    with dg.instance_for_test() as instance:
        warehouse = shared_definitions(resources).resolve_job_def("warehouse_job")
        assert warehouse.execute_in_process(instance=instance).success
        first = Lifecycle(RAIN.use_case, resources, instance)
        first.materialize(
            *THROUGH_REGISTRY,
            "online_store",
            trained_model=SEARCH,
            evaluation_report=LENIENT,
        )
        # Put in Production directly: promotion's governance is another module's subject.
        move_to_stage(resources["mlflow"].client(), MODEL, "1", Stage.PRODUCTION)
        second = Lifecycle(evolved(RAIN.use_case), resources, instance)
        result = second.materialize(
            *THROUGH_REGISTRY,
            trained_model=SEARCH,
            evaluation_report=LENIENT,
        )
        # The changed view is not loaded online yet: version 2 is not deployed, and no
        # replica starts serving it.
        refused = _deploy_refusal(resources), _replica_refusal(resources, tmp_path_factory)
        loaded = second.materialize("online_store")
        yield Evolving(resources, instance, result, second, refused, loaded)


class Evolving(NamedTuple):
    resources: dict
    instance: dg.DagsterInstance
    result: dg.ExecuteInProcessResult  # the changed features through the registry
    second: Lifecycle
    # Why version 2 could not be deployed, and why a replica did not start serving it,
    # before the online store's next load.
    refused: tuple[str, str]
    loaded: dg.ExecuteInProcessResult  # that load


def _deploy_refusal(resources) -> str:
    client = resources["mlflow"].client()
    store = resources["feast"].feature_store(SCOPE)
    model = load(client, resolve(client, MODEL, "2"))
    with pytest.raises(ModelLoadError) as refused:
        smoke_prediction(model, store, {"airport_code": "JFK"}, "binary")
    return str(refused.value)


def _replica_refusal(resources, tmp_path_factory) -> str:
    """An endpoint replica given version 2 (the class itself, without Ray Serve)."""
    client = resources["mlflow"].client()
    spec = EndpointSpec(
        tracking_uri=resources["mlflow"].tracking_uri,
        feast_config=resources["feast"].repo_config(SCOPE),
        entity_keys=RAIN.use_case.target.keys,
        answer_field=RAIN.use_case.answer_field,
        request_log_root=tmp_path_factory.mktemp("requests"),
    )
    replica = PredictionEndpoint.func_or_class(spec)
    with pytest.raises(RuntimeError) as refused:
        replica.reconfigure({"production": asdict(resolve(client, MODEL, "2"))})
    return str(refused.value)


def test_changed_features_get_a_new_service_version_and_keep_the_old_one(evolving):
    resources, result = evolving.resources, evolving.result
    registry = _metadata(result, "feast_registry")
    assert registry["current_feature_service"] == "airport_rain_v2"
    assert registry["kept_feature_services"] == ["airport_rain_v1"]
    store = resources["feast"].feature_store(SCOPE)
    served = {
        s.name: {f.name for p in s.feature_view_projections for f in p.features}
        for s in store.list_feature_services()
    }
    assert set(served) == {"airport_rain_v1", "airport_rain_v2"}
    assert RETIRED in served["airport_rain_v1"] and ADDED not in served["airport_rain_v1"]
    assert ADDED in served["airport_rain_v2"] and RETIRED not in served["airport_rain_v2"]
    # The table still computes what version 1 reads, beside the new feature.
    files = resources["storage"].files(SCOPE)
    table = pl.read_parquet(files.feature_table_path("airport_weather"))
    assert {RETIRED, ADDED} <= set(table.columns)
    assert table[RETIRED].null_count() < table.height // 10
    new = pl.read_parquet(files.training_set_path("airport_rain_v2"))
    assert f"airport_weather__{ADDED}" in new.columns
    assert f"airport_weather__{RETIRED}" not in new.columns


def test_the_candidate_is_compared_with_production_on_its_own_features_same_rows(evolving):
    resources = evolving.resources
    files = resources["storage"].files(SCOPE)
    report = EvaluationReport.read(files.models_dir / "evaluation.json")
    assert (report.baseline, str(report.baseline_version)) == ("production v1", "1")
    run = resources["mlflow"].client().get_run(report.candidate_run_id)
    assert run.data.tags["facilflow.feature_service"] == "airport_rain_v2"
    # Production's AUC, recomputed from its own training set over the same holdout rows.
    old = pl.read_parquet(files.training_set_path("airport_rain_v1"))
    holdout = old.filter(
        pl.col(TIME_COLUMN) >= pl.lit(report.holdout_start).str.to_datetime(time_zone="UTC")
    )
    assert holdout.height == report.holdout_rows
    client = resources["mlflow"].client()
    production = load(client, resolve(client, MODEL, "1"))
    names = production.input_names
    assert f"airport_weather__{RETIRED}" in names
    scores = production.predict(holdout.select(names).cast(pl.Float32).to_numpy())
    label = RAIN.use_case.label
    expected = roc_auc_score(holdout[label].to_numpy(), scores)
    assert report.baseline_metrics["auc"] == pytest.approx(expected, abs=1e-6)


def test_a_view_whose_features_changed_is_loaded_in_full_before_a_version_reading_it_deploys(
    evolving,
):
    assert _metadata(evolving.result, "feast_registry")["views_to_reload"] == ["airport_weather"]
    deploy, replica = evolving.refused
    assert deploy.startswith(
        f"models:/{MODEL}/2 reads features the online store has not loaded: view "
        "'airport_weather' ("
    )
    assert ADDED in deploy and "materialization of online_store" in deploy
    assert replica.startswith("the online store has not loaded {'airport_weather': [")
    assert ADDED in replica and "of airport_rain_v2" in replica
    # A full load, not an incremental one from where version 1's load ended.
    loaded = _metadata(evolving.loaded, "online_store")
    assert loaded["first_loads"] == ["airport_weather"] and loaded["incremental_loads"] == []
    store = evolving.resources["feast"].feature_store(SCOPE)
    table = pl.read_parquet(
        evolving.resources["storage"].files(SCOPE).feature_table_path("airport_weather")
    )
    latest = table.filter(pl.col("airport_code") == "JFK").sort("reported_at")[-1]
    online = store.get_online_features(
        features=[f"airport_weather:{ADDED}"], entity_rows=[{"airport_code": "JFK"}]
    ).to_dict()
    assert online[ADDED][0] == pytest.approx(latest[ADDED][0])


def test_each_version_predicts_online_on_the_service_it_was_trained_on(evolving):
    resources = evolving.resources
    client = resources["mlflow"].client()
    store = resources["feast"].feature_store(SCOPE)
    request = {"airport_code": "JFK"}
    for version, service, feature in [
        ("1", "airport_rain_v1", RETIRED),
        ("2", "airport_rain_v2", ADDED),
    ]:
        model = load(client, resolve(client, MODEL, version))
        assert model.ref.feature_service == service
        assert f"airport_weather__{feature}" in model.input_names
        prediction = smoke_prediction(model, store, request, "binary")
        assert 0 <= prediction <= 1 and np.isfinite(prediction)


def test_a_kept_features_meaning_cannot_change_and_an_unused_version_goes(evolving):
    resources, instance, second = evolving.resources, evolving.instance, evolving.second
    files = resources["storage"].files(SCOPE)
    table_path = files.feature_table_path("airport_weather")
    # Version 2 is in Production now, reading ADDED over 6 hours: its meaning is fixed.
    move_to_stage(resources["mlflow"].client(), MODEL, "2", Stage.PRODUCTION)
    before = table_path.read_bytes()
    redefined = Lifecycle(evolved(RAIN.use_case, window="3h"), resources, instance)
    failed = redefined.materialize("airport_weather", raise_on_error=False)
    assert not failed.success
    error = failed.get_step_failure_events()[0].step_failure_data.error
    assert error.cause.cls_name == FeatureVersionError.__name__
    message = error.cause.message
    assert f"table 'airport_weather', feature '{ADDED}': 'definition' changed" in message
    assert "feature service airport_rain_v2 still reads it" in message
    assert table_path.read_bytes() == before

    # Version 1 is archived: nothing reads airport_rain_v1 now, so it and its feature go.
    result = second.materialize("airport_weather", "feast_registry")
    assert _metadata(result, "feast_registry")["kept_feature_services"] == []
    store = resources["feast"].feature_store(SCOPE)
    assert [s.name for s in store.list_feature_services()] == ["airport_rain_v2"]
    assert RETIRED not in pl.read_parquet(table_path).columns
