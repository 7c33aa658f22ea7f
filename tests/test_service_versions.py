"""Feature service versions decided from a use case's file and what its registries record:
names, when a new version is made, which old ones stay, and what they still need computed."""

from pathlib import Path

import pytest
from feast import FeatureService, FeatureView

from facilflow_assets.features.feast_objects import feast_objects
from facilflow_assets.features.service_versions import (
    FeatureVersionError,
    ServiceLineup,
    ServiceVersion,
    table_with_kept,
    version_name,
)
from facilflow_assets.use_case import UseCase
from tests.lifecycle import lifecycle

RAIN = lifecycle("airport_rain").use_case


def edited(use_case: UseCase, edit) -> UseCase:
    """The use case after `edit(document)`, as if its file had been changed so."""
    document = use_case.model_dump(mode="json")
    edit(document)
    return UseCase.model_validate(document)


def retire(*names: str):
    def edit(document):
        [table] = document["tables"]
        table["features"] = [f for f in table["features"] if f["name"] not in names]
        for limits in table["expect"].values():
            if isinstance(limits, dict):
                for name in names:
                    limits.pop(name, None)

    return edit


def add_feature(window: str = "6h"):
    def edit(document):
        document["tables"][0]["features"].append(
            {
                "name": "wind_speed_max_6h",
                "kind": "rolling",
                "column": "wind_speed_mph",
                "stat": "max",
                "window": window,
            }
        )

    return edit


def first_version(use_case: UseCase = RAIN) -> ServiceVersion:
    return ServiceLineup.plan(use_case, recorded=[], in_use=set()).current


def test_versions_are_named_from_the_declared_service():
    assert version_name("flight_delay_v1", 1) == "flight_delay_v1"
    assert version_name("flight_delay_v1", 2) == "flight_delay_v2"
    assert version_name("rain", 1) == "rain"
    assert version_name("rain", 3) == "rain_v3"
    assert version_name("rain_v4", 5) == "rain_v5"


def test_the_files_features_unchanged_keep_their_version_whatever_the_descriptions_say():
    v1 = first_version()
    assert (v1.name, v1.number) == ("airport_rain_v1", 1)
    reworded = edited(RAIN, lambda d: d["tables"][0].update(description="Reworded."))
    lineup = ServiceLineup.plan(reworded, [v1], in_use={"airport_rain_v1"})
    assert lineup.current.name == "airport_rain_v1" and lineup.kept == ()


def test_changed_features_make_a_new_version_kept_beside_the_old_one_while_it_is_read():
    v1 = first_version()
    changed = edited(RAIN, add_feature())
    read = ServiceLineup.plan(changed, [v1], in_use={"airport_rain_v1"})
    assert read.current.name == "airport_rain_v2"
    assert [v.name for v in read.kept] == ["airport_rain_v1"]
    unread = ServiceLineup.plan(changed, [v1], in_use=set())
    assert unread.current.name == "airport_rain_v2" and unread.kept == ()


def test_a_number_is_never_given_twice():
    """Back to version 2's features after a version 3 nothing reads: version 3 goes, and
    the next change is version 4, not a second version 3."""
    v1 = first_version()
    v2 = ServiceLineup.plan(edited(RAIN, add_feature()), [v1], set()).current
    v3 = ServiceLineup.plan(edited(RAIN, add_feature("12h")), [v1, v2], set()).current
    assert v3.name == "airport_rain_v3"
    back = ServiceLineup.plan(edited(RAIN, add_feature()), [v1, v2, v3], in_use=set())
    assert (back.current.name, back.kept, back.issued) == ("airport_rain_v2", (), 3)
    after = ServiceLineup.plan(
        edited(RAIN, add_feature("1d")), [back.current], set(), issued=back.issued
    )
    assert after.current.name == "airport_rain_v4"


def test_retired_features_stay_computed_with_what_they_read_for_a_kept_version():
    """The tendency reads the lag: both come back, in their order, with their limits."""
    v1 = first_version()
    changed = edited(RAIN, retire("pressure_3h_ago", "pressure_tendency_3h"))
    lineup = ServiceLineup.plan(changed, [v1], in_use={"airport_rain_v1"})
    [declared] = changed.tables
    table = table_with_kept(declared, lineup.kept)
    names = [f.name for f in table.features]
    assert names.index("pressure_3h_ago") < names.index("pressure_tendency_3h")
    assert table.expect.null_share_limit("pressure_tendency_3h") == 0.2
    assert table == lineup.merged.table(declared.name)
    assert table_with_kept(declared, ()) == declared


@pytest.mark.parametrize(
    ("edit", "where"),
    [
        (
            lambda d: d["tables"][0]["features"][0].update(window="12h"),
            "table 'airport_weather', feature 'precipitation_sum_6h': 'definition' changed",
        ),
        (
            lambda d: d["feast"]["views"]["airport_weather"].update(ttl="1h"),
            "view 'airport_weather': 'ttl' changed",
        ),
        (
            lambda d: d["tables"][0]["source"]["columns"].update(dewpoint_f="int"),
            "table 'airport_weather': 'source.columns.dewpoint_f' changed",
        ),
    ],
)
def test_a_name_a_kept_version_reads_cannot_change_its_meaning(edit, where):
    with pytest.raises(FeatureVersionError) as raised:
        ServiceLineup.plan(edited(RAIN, edit), [first_version()], in_use={"airport_rain_v1"})
    message = str(raised.value)
    assert message.startswith(where)
    assert "feature service airport_rain_v1 still reads it" in message
    assert "give the changed one a new name, or archive the versions" in message
    # Once no model reads version 1, the change is free.
    assert ServiceLineup.plan(edited(RAIN, edit), [first_version()], set()).kept == ()


def test_a_table_a_kept_version_reads_cannot_be_dropped():
    flights = lifecycle("flight_delay").use_case
    v1 = first_version(flights)

    def drop_plane_profile(document):
        document["tables"] = [t for t in document["tables"] if t["name"] != "plane_profile"]
        document["feast"]["views"].pop("plane_profile")

    dropped = edited(flights, drop_plane_profile)
    with pytest.raises(
        FeatureVersionError,
        match=r"^table 'plane_profile' is gone from the "
        r"file, but feature service flight_delay_v1 still reads it",
    ):
        ServiceLineup.plan(dropped, [v1], in_use={"flight_delay_v1"})
    assert ServiceLineup.plan(dropped, [v1], in_use=set()).current.name == "flight_delay_v2"


def test_feast_gets_every_kept_version_as_a_service_over_views_serving_them_all():
    changed = edited(RAIN, lambda d: (retire("month")(d), add_feature()(d)))
    lineup = ServiceLineup.plan(changed, [first_version()], in_use={"airport_rain_v1"})
    objects = feast_objects(changed, Path("features"), lineup)
    [view] = [o for o in objects if isinstance(o, FeatureView)]
    assert {"month", "wind_speed_max_6h"} <= {f.name for f in view.features}
    services = {
        o.name: {f.name for p in o.feature_view_projections for f in p.features}
        for o in objects
        if isinstance(o, FeatureService)
    }
    assert "month" in services["airport_rain_v1"] and "month" not in services["airport_rain_v2"]
    assert "wind_speed_max_6h" in services["airport_rain_v2"]
    assert "wind_speed_max_6h" not in services["airport_rain_v1"]
    recorded = [ServiceVersion.from_service(o) for o in objects if isinstance(o, FeatureService)]
    assert [(v.name, v.number) for v in recorded] == [
        ("airport_rain_v2", 2),
        ("airport_rain_v1", 1),
    ]
    issued = {ServiceVersion.issued_by(o) for o in objects if isinstance(o, FeatureService)}
    assert issued == {2}
    assert recorded[1].definition == lineup.kept[0].definition


def test_the_feast_cli_repository_rebuilds_the_same_lineup():
    """`facilflow feast` writes the lineup beside its repository, so a `feast apply` there
    keeps the services the assets keep."""
    lineup = ServiceLineup.plan(
        edited(RAIN, add_feature()), [first_version()], in_use={"airport_rain_v1"}
    )
    again = ServiceLineup.from_json(lineup.to_json())
    assert [v.name for v in again.versions] == ["airport_rain_v2", "airport_rain_v1"]
    assert again.merged == lineup.merged
