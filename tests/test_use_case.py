"""A use case is one YAML file: each file builds its Feast objects, mistakes stop loading
with a message naming the file and the place, and `facilflow use-cases check` says so
before a file is deployed; `facilflow feast` runs the feast CLI on one use case's project.
The second use case's whole lifecycle runs in test_production_profile.py."""

import copy
import re
from datetime import UTC, datetime, timedelta
from pathlib import Path

import dagster as dg
import pandas as pd
import polars as pl
import pytest
import yaml
from click.testing import CliRunner
from feast import FeatureService, FeatureView
from feast.on_demand_feature_view import OnDemandFeatureView

from facilflow_assets.cli import main
from facilflow_assets.environment import Environment
from facilflow_assets.feature_spec import FeatureSpecError
from facilflow_assets.features.feast_objects import feast_objects
from facilflow_assets.features.target_rows import predicted, with_label
from facilflow_assets.resource_map import build_resources
from facilflow_assets.tenants import load_tenants
from facilflow_assets.use_case import (
    USE_CASES_DIR,
    TargetSpec,
    UseCase,
    UseCaseError,
    load_use_case,
    use_case_path,
)
from tests.lifecycle import lifecycle

RAIN = "airport_rain"
FEATURES = Path("/data/features")  # where a use case's feature tables are; any folder
# The shipped use-case files (a file a tenant lists may not be written yet).
SHIPPED = sorted(USE_CASES_DIR.glob("*.yaml"))


@pytest.mark.parametrize("path", SHIPPED, ids=lambda p: p.stem)
def test_each_use_case_file_builds_its_feast_objects(path):
    use_case = load_use_case(path)
    objects = feast_objects(use_case, FEATURES)
    views = [o for o in objects if isinstance(o, FeatureView)]
    [service] = [o for o in objects if isinstance(o, FeatureService)]
    assert service.name == use_case.feature_service
    assert sorted(v.name for v in views) == sorted(t.name for t in use_case.tables)
    served = {f"{p.name}__{f.name}" for p in service.feature_view_projections for f in p.features}
    assert served == use_case.served_features()
    assert use_case.baseline.group_by  # checked against the served features on load
    for view in views:
        assert view.tags["use_case"] == use_case.use_case
        assert view.batch_source.path == str(FEATURES / f"{view.name}.parquet")


def test_an_on_demand_view_is_rebuilt_from_its_registry_source():
    """Feast rebuilds an on-demand function from its source text wherever it reads features
    (the endpoint's replicas): the rebuilt one computes what the applied one does."""
    objects = feast_objects(load_use_case(use_case_path("flight_delay")), FEATURES)
    [applied] = [o for o in objects if isinstance(o, OnDemandFeatureView)]
    rebuilt = OnDemandFeatureView.from_proto(applied.to_proto())
    inputs = pd.DataFrame(
        {"route_delay_rate_30d": [0.3, 0.1, None], "carrier_delay_rate_7d": [0.2, 0.0, 0.5]}
    )
    expected = applied.feature_transformation.udf(inputs)
    actual = rebuilt.feature_transformation.udf(inputs)
    assert actual["route_vs_carrier_delay_rate"].iloc[0] == pytest.approx(1.5)
    assert actual["route_vs_carrier_delay_rate"].iloc[1:].isna().all()  # 0 below, null above
    pd.testing.assert_frame_equal(actual, expected)


def test_a_label_read_ahead_comes_from_the_same_keys_later_row():
    rain = load_use_case(use_case_path(RAIN)).target
    start = datetime(2013, 6, 1, tzinfo=UTC)
    hours = [start + timedelta(hours=h) for h in (0, 1, 2, 4)]  # 03:00 was not observed
    rows = pl.DataFrame(
        {
            "airport_code": ["JFK"] * 4 + ["LGA"],
            "reported_at": [*hours, hours[0]],
            "precipitation_in": [0.0, 0.02, 0.0, 0.1, 0.3],
        }
    )
    labelled = with_label(rows, rain).sort("airport_code", "reported_at")
    # JFK: rain at 01:00, none at 02:00, 03:00 unknown, 04:00 the last; LGA: one hour only.
    assert labelled["rains_next_hour"].to_list() == [1, 0, None, None, None]
    assert labelled.columns == [*rows.columns, "rains_next_hour"]


def _flights_target(label: dict, where: list[dict] | None = None) -> TargetSpec:
    return TargetSpec.model_validate(
        {
            "model": "marts/flight_schedule",
            "keys": ["flight_id", "origin_airport_code"],
            "time": "scheduled_departure_at",
            "subject": "flight",
            "label": label,
            "where": where or [],
        }
    )


def _flights() -> pl.DataFrame:
    start = datetime(2013, 6, 1, 12, tzinfo=UTC)
    minutes = [0, 20, 60, 61, 0, 30]
    return pl.DataFrame(
        {
            "flight_id": [f"f{i}" for i in range(6)],
            "origin_airport_code": ["JFK"] * 4 + ["LGA"] * 2,
            "scheduled_departure_at": [start + timedelta(minutes=m) for m in minutes],
            "departure_delay_minutes": [10.0, 30.0, None, 90.0, 5.0, 15.0],
            "cancelled": [False, False, True, False, False, False],
        }
    )


@pytest.mark.parametrize(
    "comparison,expected",
    [
        ({"above": 15}, [0, 1, None, 1, 0, 0]),
        ({"at_least": 15}, [0, 1, None, 1, 0, 1]),
        ({"below": 15}, [1, 0, None, 0, 1, 0]),
        ({"at_most": 10}, [1, 0, None, 0, 1, 0]),
        ({"between": [10, 30]}, [1, 1, None, 0, 0, 1]),  # both ends included
    ],
)
def test_a_label_compared_is_one_zero_and_null_stays_null(comparison, expected):
    target = _flights_target({"column": "departure_delay_minutes", "name": "late", **comparison})
    assert with_label(_flights(), target)["late"].to_list() == expected


def test_a_label_aggregated_over_the_next_window_reads_the_groups_later_rows():
    target = _flights_target(
        {
            "column": "departure_delay_minutes",
            "over_next": "1h",
            "agg": "mean",
            "group_by": ["origin_airport_code"],
            "name": "origin_delay_next_hour",
        }
    )
    labelled = with_label(_flights(), target)
    # JFK at 12:00: the flights at 12:20 and 13:00 (null, skipped), not 13:01; at 12:20:
    # 13:00 (null) and 13:01; at 13:00: 13:01. A window without a value has no label.
    assert labelled["origin_delay_next_hour"].to_list() == [30.0, 90.0, 90.0, None, 15.0, None]
    thresholded = _flights_target(
        {**target.label.model_dump(exclude_none=True), "at_least": 60, "agg": "sum"}
    )
    assert with_label(_flights(), thresholded)["origin_delay_next_hour"].to_list() == [
        0,
        1,
        1,
        None,
        0,
        None,
    ]


def test_the_target_filters_keep_the_rows_predicted_after_the_label_is_read():
    target = _flights_target(
        {"column": "departure_delay_minutes", "ahead": "1m", "name": "next_minute_delay"},
        where=[{"column": "cancelled", "equals": False}],
    )
    kept = predicted(with_label(_flights(), target), target)
    assert kept["flight_id"].to_list() == ["f0", "f1", "f3", "f4", "f5"]
    assert kept["next_minute_delay"].to_list() == [None, None, None, None, None]


@pytest.mark.parametrize(
    "label,expected",
    [
        ({"above": 1, "below": 3}, "give one comparison, not above and below"),
        ({"between": [3, 1]}, "field 'between': [3.0, 1.0] is not [low, high]"),
        ({"ahead": "1h", "over_next": "1h"}, "give one of 'ahead' and 'over_next', not both"),
        ({"agg": "sum"}, "'agg' and 'group_by' aggregate over the next window: give 'over_next'"),
    ],
)
def test_a_label_rule_that_says_two_things_is_refused(label, expected):
    with pytest.raises(ValueError, match=re.escape(expected)):
        _flights_target({"column": "departure_delay_minutes", "name": "late", **label})


def test_the_demo_days_default_to_the_middle_of_training_and_a_day_before_it():
    document = _rain_document()
    document.pop("sample_days")
    days = UseCase.model_validate(document).demo_days
    assert (days.seen.isoformat(), days.unseen.isoformat()) == ("2013-06-16", "2013-01-01")
    document["calendar"]["start"] = document["splits"]["train_start"]
    assert UseCase.model_validate(document).demo_days.unseen.isoformat() == "2013-11-01"


def _write(tmp_path: Path, document: dict) -> Path:
    path = tmp_path / f"{document['use_case']}.yaml"
    path.write_text(yaml.safe_dump(document, sort_keys=False))
    return path


def _rain_document() -> dict:
    return yaml.safe_load(use_case_path(RAIN).read_text())


def _mistake(change) -> dict:
    document = copy.deepcopy(_rain_document())
    change(document)
    return document


@pytest.mark.parametrize(
    "document,expected",
    [
        (
            _mistake(lambda d: d["feast"]["views"]["airport_weather"].update(entities=["port"])),
            "feast, views, 'airport_weather', field 'entities': unknown entity 'port'",
        ),
        (
            _mistake(lambda d: d["feast"].update(views={})),
            "feast, views: table 'airport_weather' has no view",
        ),
        (
            _mistake(lambda d: d["target"].update(keys=["airport"])),
            "entity 'airport' joins on 'airport_code', which is not among the target's keys",
        ),
        (
            _mistake(lambda d: d["baseline"].update(group_by=["airport_code", "hour"])),
            "baseline, field 'group_by': 'hour' is neither a target key nor a served feature",
        ),
        (
            _mistake(lambda d: d["target"]["label"].pop("name")),
            "field 'target.label': a label derived with 'ahead', 'over_next' or a comparison "
            "needs a 'name'",
        ),
        (
            _mistake(lambda d: d["target"]["label"].update(ahead="an hour")),
            "field 'target.label': ahead: 'an hour' is not a duration like '30m', '6h' or '7d'",
        ),
        (
            _mistake(
                lambda d: d["feast"]["views"]["airport_weather"].update(
                    join_keys={"airprt_code": "airport_code"}
                )
            ),
            "feast, views, 'airport_weather', field 'join_keys': 'airprt_code' is not an entity "
            "column of table 'airport_weather' (its entity columns: airport_code)",
        ),
        (
            _mistake(
                lambda d: d.update(sample_days={"seen": "2013-06-15", "unseen": "2014-02-01"})
            ),
            "field 'sample_days.unseen': 2014-02-01 lies outside the calendar, 2013-01-01 to "
            "2014-01-01",
        ),
        (
            _mistake(
                lambda d: d.update(
                    training={"search_space": {"num_leavs": {"distribution": "randint", "low": 8}}}
                )
            ),
            "field 'training.search_space.num_leavs': a 'randint' dimension needs low < high",
        ),
        (
            _mistake(
                lambda d: d.update(
                    training={
                        "search_space": {
                            "num_leavs": {"distribution": "randint", "low": 8, "high": 64}
                        }
                    }
                )
            ),
            "field 'training': search_space: unknown hyperparameter 'num_leavs' (did you mean "
            "'num_leaves'?)",
        ),
        (
            _mistake(lambda d: d.update(training={"max_rounds": 50, "grace_rounds": 60})),
            "field 'training': grace_rounds (60) must not exceed max_rounds (50)",
        ),
        (
            _mistake(lambda d: d["calendar"].update(time_zone="New York")),
            "field 'calendar': 'New York' is not a time zone name",
        ),
        (
            _mistake(lambda d: d["feast"]["entities"].append(d["feast"]["entities"][0])),
            "feast: the entity name 'airport' is used more than once",
        ),
        (
            _mistake(lambda d: d["target"]["label"].update(name="airport_code")),
            "field 'target': label name 'airport_code' is taken by a key, the time or an answer",
        ),
        (
            _mistake(lambda d: d.update(score="rains_next_hour")),
            "field 'score': 'rains_next_hour' is taken by a key, the time, the label or a column",
        ),
        (
            _mistake(lambda d: d.update(score="model_version")),
            "field 'score': 'model_version' is taken by a key, the time, the label or a column "
            "of the batch scores (model, model_version)",
        ),
        (
            _mistake(lambda d: d["target"]["label"].update(name="features_found")),
            "label name 'features_found' is taken by a key, the time or an answer field",
        ),
        (
            _mistake(
                lambda d: (
                    d["tables"][0].update(name="training_set"),
                    d["feast"]["views"].update(
                        training_set=d["feast"]["views"].pop("airport_weather")
                    ),
                )
            ),
            "tables: 'training_set' names one of the use case's Feast assets",
        ),
        (
            _mistake(lambda d: d["tables"][0]["source"]["columns"].update(airport_code="int")),
            "entity 'airport' joins on 'airport_code', which is int; join keys are text",
        ),
        (
            _mistake(lambda d: d["splits"].update(train_start="2012-03-01")),
            "field 'splits': train_start to holdout_start must lie within the calendar",
        ),
        (
            _mistake(
                lambda d: d["feast"].update(
                    on_demand=[
                        {
                            "name": "rain_context",
                            "description": "test",
                            "sources": ["airport_weather"],
                            "features": [
                                {
                                    "name": "wetness",
                                    "kind": "ratio",
                                    "numerator": "humidity",
                                    "denominator": "temperature_f",
                                }
                            ],
                        }
                    ]
                )
            ),
            "on_demand 'rain_context', feature 'wetness', field 'numerator': no source view has "
            "the feature 'humidity'",
        ),
    ],
)
def test_a_use_case_mistake_names_the_file_and_the_place(tmp_path, document, expected):
    path = _write(tmp_path, document)
    with pytest.raises(FeatureSpecError) as error:
        load_use_case(path)
    assert str(error.value).startswith(f"{path}: ")
    assert expected in str(error.value)


def test_a_non_finite_on_zero_is_refused_before_it_reaches_generated_code(tmp_path):
    document = _rain_document()
    document["feast"]["on_demand"] = [
        {
            "name": "rain_context",
            "description": "test",
            "sources": ["airport_weather"],
            "features": [
                {
                    "name": "wet_share",
                    "kind": "ratio",
                    "numerator": "precipitation_in",
                    "denominator": "precipitation_sum_6h",
                    "on_zero": float("nan"),
                }
            ],
        }
    ]
    with pytest.raises(FeatureSpecError, match="on_zero.*finite number"):
        load_use_case(_write(tmp_path, document))
    document["feast"]["on_demand"][0]["features"][0]["on_zero"] = 0.0
    [view] = [
        o
        for o in feast_objects(load_use_case(_write(tmp_path, document)), FEATURES)
        if isinstance(o, OnDemandFeatureView)
    ]
    rebuilt = OnDemandFeatureView.from_proto(view.to_proto()).feature_transformation.udf
    shares = rebuilt(
        pd.DataFrame({"precipitation_in": [0.1, 0.0], "precipitation_sum_6h": [0.4, 0]})
    )
    assert shares["wet_share"].tolist() == [0.25, 0.0]


def test_a_file_is_named_after_its_use_case(tmp_path):
    path = tmp_path / "rain.yaml"
    path.write_text(use_case_path(RAIN).read_text())
    with pytest.raises(UseCaseError, match="names the use case 'airport_rain'"):
        load_use_case(path)


def test_an_unknown_use_case_lists_the_known_ones():
    known = ", ".join(path.stem for path in SHIPPED)
    assert {"airport_rain", "flight_delay"} <= {path.stem for path in SHIPPED}
    with pytest.raises(UseCaseError, match=f"the use cases here are: {known}$"):
        load_use_case(use_case_path("airport_delay"))


def test_the_cli_lists_use_cases_and_checks_a_new_file(tmp_path):
    runner = CliRunner()
    listed = runner.invoke(main, ["use-cases", "list"])
    assert listed.exit_code == 0
    lines = listed.output.splitlines()
    # Each file, with the tenants that run it.
    assert [line.split(" ", 1)[0] for line in lines] == [path.stem for path in SHIPPED]
    assert (
        "airport_rain [demo]: Rain at a New York airport in the next hour (any precipitation)"
        in lines
    )
    assert (
        "flight_delay [demo, acme]: Flight-delay classifier (departures 15 minutes late or more)"
        in lines
    )
    tenants = load_tenants()
    for path, line in zip(SHIPPED, lines, strict=True):
        runs = [name for name, spec in tenants.items() if path.stem in spec.use_cases]
        assert line.startswith(f"{path.stem} [{', '.join(runs) or 'no tenant'}]: "), line
    checked = runner.invoke(main, ["use-cases", "check", str(use_case_path(RAIN))])
    assert checked.exit_code == 0
    assert "label: rains_next_hour" in checked.output
    assert "served features: 17" in checked.output
    broken = _write(tmp_path, _mistake(lambda d: d["feast"].update(views={})))
    refused = runner.invoke(main, ["use-cases", "check", str(broken)])
    assert refused.exit_code == 1
    assert f"{broken}: feast, views: table 'airport_weather' has no view" in refused.output


def test_the_feast_cli_works_on_one_use_cases_project_alone(tmp_path, capfd):
    """`facilflow feast -u UC` generates UC's repository over the registry its assets use and
    runs `feast` there (a process of its own, whose output capfd reads); another use case's
    project is left as it was."""
    home = tmp_path / "home"
    resources = build_resources(Environment.LOCAL, home=home)
    feast = resources["feast"]
    delay, rain = lifecycle("flight_delay"), lifecycle(RAIN)
    # flight_delay's registry, as its asset applies it.
    applied = dg.materialize(
        [delay.asset("feast_registry")],
        resources={key: resources[key] for key in ("feast", "storage", "mlflow")},
    )
    assert applied.success
    delay_views = {v.name for v in feast.feature_store(delay.scope).list_feature_views()}
    assert delay_views == {t.name for t in delay.use_case.tables}
    capfd.readouterr()

    runner = CliRunner()
    made = runner.invoke(main, ["--home", str(home), "feast", "-u", RAIN, "apply"])
    assert made.exit_code == 0, made.output
    out = capfd.readouterr().out
    assert f"Applying changes for project {rain.scope.feast_project}" in out
    assert "Created feature service airport_rain_v1" in out
    repo = feast.state_dir / "repos" / rain.scope.feast_project
    settings = yaml.safe_load((repo / "feature_store.yaml").read_text())
    assert settings["project"] == "demo_airport_rain"
    assert settings["registry"] == str(feast.registry_path(rain.scope))

    listed = runner.invoke(
        main, ["--home", str(home), "feast", "-u", RAIN, "feature-views", "list"]
    )
    assert listed.exit_code == 0, listed.output
    rows = capfd.readouterr().out.splitlines()
    assert rows[0].split()[0] == "NAME"
    assert [row.split()[0] for row in rows[1:] if row.strip()] == ["airport_weather"]

    # The same registry the assets read, and flight_delay's project as it was.
    assert [v.name for v in feast.feature_store(rain.scope).list_feature_views()] == [
        "airport_weather"
    ]
    assert {v.name for v in feast.feature_store(delay.scope).list_feature_views()} == delay_views
    assert sorted(p.name for p in (feast.state_dir / "repos").iterdir()) == ["demo_airport_rain"]

    # A tenant runs only the use cases tenants.yaml gives it.
    refused = runner.invoke(
        main, ["--home", str(home), "--tenant", "acme", "feast", "-u", RAIN, "apply"]
    )
    assert refused.exit_code == 2
    assert "tenant 'acme' runs no use case 'airport_rain'" in refused.output
    assert not (feast.state_dir / "repos" / "acme_airport_rain").exists()


def test_a_key_given_twice_in_a_use_case_file_is_an_error_not_a_silent_choice(tmp_path):
    text = use_case_path(RAIN).read_text()
    path = tmp_path / f"{RAIN}.yaml"
    path.write_text(text + "\nscore: rain_chance\n")
    with pytest.raises(FeatureSpecError, match="the key 'score' is given twice"):
        load_use_case(path)
