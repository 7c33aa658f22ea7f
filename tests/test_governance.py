"""Transitions, the approval workflow and approval_sensor on a real local MLflow store."""

import threading
from datetime import UTC, datetime

import dagster as dg
import pytest
from click.testing import CliRunner

from facilflow_assets.cli import main
from facilflow_assets.environment import Environment
from facilflow_assets.events.reader import EventReader
from facilflow_assets.governance.audit import AuditTrail, production_at
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.requests import (
    DECISION,
    DECISION_BY,
    DECISION_REASON,
    REQUEST_BY,
    REQUEST_STAGE,
    REQUEST_STATUS,
    Decision,
    decide,
    request_production,
)
from facilflow_assets.governance.review import PROMOTION_RUN_TAG
from facilflow_assets.governance.stages import STAGE_TAG, Stage, move_to_stage
from facilflow_assets.governance.transitions import GovernanceError, rollback_target, transition
from facilflow_assets.resource_map import build_resources
from facilflow_assets.scope import ModelScope
from jobs.promotion import PromotionRefused
from resources import EventsResource, MlflowResource, RetrainingPolicyResource
from tests.lifecycle import lifecycle
from tests.mlflow_server import mlflow_server

SCOPE = ModelScope("demo", "flight_delay")
MODEL = "demo.flight_delay"
APPROVERS = ["carol", "dave"]  # the demo tenant's, in tenants.yaml
ROUNDS = 5  # of ten concurrent promotions on PostgreSQL
SENSOR_RESOURCES = {
    "approval_sensor": ("mlflow", "governance", "events"),
    "redeploy_sensor": ("mlflow", "events"),
    "drift_retraining_sensor": ("mlflow", "retraining"),
}
PROMOTION_RESOURCES = ("mlflow", "governance", "events")


def tick_sensor(resources: dict, name: str, tenant: str = "demo", **context) -> object:
    """One evaluation of the sensor `name` with the resources it asks for."""
    given = {k: resources[k] for k in SENSOR_RESOURCES[name]}
    with dg.build_sensor_context(resources=given, **context) as built:
        return lifecycle("flight_delay", tenant).sensor(name)(built)


class Registry:
    """A local store holding MODEL with versions from runs that passed (or failed) evaluation."""

    def __init__(self, home):
        self.home = home
        self.resources = build_resources(Environment.LOCAL, home=home)
        tracking = self.resources["mlflow"]
        self.client = tracking.client()
        self.experiment_id = tracking.ensure_experiment(SCOPE).experiment_id
        self.audit = AuditTrail(self.client, SCOPE.audit_experiment_name)
        self.client.create_registered_model(MODEL)

    def add_version(self, evaluation: str = "passed", stage: Stage = Stage.STAGING) -> str:
        run = self.client.create_run(self.experiment_id, tags={"facilflow.evaluation": evaluation})
        version = self.client.create_model_version(
            MODEL, source=f"{self.home}/artifacts/{run.info.run_id}", run_id=run.info.run_id
        )
        self.client.set_model_version_tag(MODEL, version.version, STAGE_TAG, Stage.NONE)
        # As an evaluation records it; these tests never load the files themselves.
        self.client.set_model_version_tag(
            MODEL, version.version, DIGEST_TAG, f"sha256:{run.info.run_id}"
        )
        if stage != Stage.NONE:
            move_to_stage(self.client, MODEL, str(version.version), stage)
        return str(version.version)

    def approve(self, version: str, approver: str, comment: str) -> None:
        decide(
            self.client, self.audit, MODEL, version, approver, Decision.APPROVED, comment, APPROVERS
        )

    def tags(self, version: str) -> dict[str, str]:
        return self.client.get_model_version(MODEL, version).tags

    def stage(self, version: str) -> str:
        return self.tags(version)[STAGE_TAG]

    def tick(self, cursor: str | None = None, tenant: str = "demo") -> dg.SensorResult:
        """A tick of `tenant`'s flight_delay approval sensor."""
        return tick_sensor(self.resources, "approval_sensor", tenant, cursor=cursor)

    def run(self, run_request: dg.RunRequest) -> dg.ExecuteInProcessResult:
        """The demo tenant's flight_delay promotion job, launched as `run_request` asks."""
        resources = {k: self.resources[k] for k in PROMOTION_RESOURCES}
        return (
            lifecycle()
            .job("promotion_job", resources)
            .execute_in_process(
                run_config=run_request.run_config, tags=run_request.tags, raise_on_error=False
            )
        )


@pytest.fixture
def registry(tmp_path) -> Registry:
    return Registry(tmp_path / "home")


def test_promoting_archives_the_previous_production_version_and_audits_both(registry):
    first, second = registry.add_version(), registry.add_version()
    transition(registry.client, registry.audit, MODEL, first, Stage.PRODUCTION, "ops", "go live")
    transition(registry.client, registry.audit, MODEL, second, Stage.PRODUCTION, "ops", "better")
    assert (registry.stage(first), registry.stage(second)) == ("Archived", "Production")
    assert registry.client.get_model_version_by_alias(MODEL, "production").version in (2, "2")
    actions = [(r.version, r.action, r.to_stage) for r in registry.audit.history(MODEL)]
    assert actions == [
        (first, "transition", "Production"),
        (second, "transition", "Production"),
        (first, "archive", "Archived"),
    ]


def test_a_transition_to_the_current_stage_or_of_an_unknown_version_changes_nothing(registry):
    version = registry.add_version()
    with pytest.raises(GovernanceError, match="already in Staging"):
        transition(registry.client, registry.audit, MODEL, version, Stage.STAGING, "ops", "")
    with pytest.raises(GovernanceError, match="has no version 9"):
        transition(registry.client, registry.audit, MODEL, "9", Stage.PRODUCTION, "ops", "")
    with pytest.raises(GovernanceError, match="no registered model 'acme.churn'"):
        request_production(registry.client, registry.audit, "acme.churn", "1", "alice", "")
    assert registry.audit.history(MODEL) == []


def test_request_self_approval_refused_approval_promotes_once(registry):
    old, new = registry.add_version(), registry.add_version()
    transition(registry.client, registry.audit, MODEL, old, Stage.PRODUCTION, "ops", "first")
    new = registry.add_version()
    request_production(registry.client, registry.audit, MODEL, new, "carol", "AUC +2%")
    assert registry.tags(new)[REQUEST_STATUS] == "pending"
    with pytest.raises(GovernanceError, match="carol requested this transition and cannot"):
        decide(
            registry.client,
            registry.audit,
            MODEL,
            new,
            "carol",
            Decision.APPROVED,
            "mine",
            APPROVERS,
        )
    with pytest.raises(GovernanceError, match="mallory is not a designated approver"):
        decide(
            registry.client, registry.audit, MODEL, new, "mallory", Decision.APPROVED, "", APPROVERS
        )
    assert DECISION not in registry.tags(new)

    assert registry.tick().run_requests == []  # no decision yet
    registry.approve(new, "dave", "metrics hold up")
    with pytest.raises(GovernanceError, match="already approved by dave"):
        decide(
            registry.client, registry.audit, MODEL, new, "carol", Decision.REJECTED, "", APPROVERS
        )

    first = registry.tick()
    [run_request] = first.run_requests
    assert run_request.run_key.startswith(f"promote:{MODEL}:v{new}:")
    assert list(run_request.run_config["ops"]) == ["flight_delay_promote_approved_version"]
    assert (
        run_request.tags["facilflow/source_run"]
        == registry.client.get_model_version(MODEL, new).run_id
    )
    assert registry.tick(first.cursor).run_requests == []  # the cursor remembers it

    result = registry.run(run_request)
    assert result.success
    assert result.dagster_run.job_name == "flight_delay_promotion_job"
    assert {k: result.dagster_run.tags[k] for k in SCOPE.run_tags} == SCOPE.run_tags
    tags = registry.tags(new)
    assert (tags[STAGE_TAG], tags[REQUEST_STATUS]) == ("Production", "promoted")
    assert tags[PROMOTION_RUN_TAG] == result.run_id
    assert registry.stage(old) == "Archived"
    assert registry.tick(first.cursor).run_requests == []
    again = registry.run(run_request)  # a second launch of the same order changes nothing
    assert not again.success
    assert registry.stage(new) == "Production"
    actions = [(r.version, r.action, r.actor) for r in registry.audit.history(MODEL)][1:]
    assert actions == [
        (new, "request", "carol"),
        (new, "approval", "dave"),
        (new, "transition", "dave"),
        (old, "archive", "dave"),
    ]


def test_another_tenants_sensor_and_promotion_job_leave_the_model_alone(registry):
    """acme runs flight_delay too, under the same job and sensor names in its own location:
    its sensor does not act on demo's approval, and its job refuses demo's order."""
    version = registry.add_version()
    request_production(registry.client, registry.audit, MODEL, version, "carol", "")
    registry.approve(version, "dave", "ok")
    resources = {k: registry.resources[k] for k in PROMOTION_RESOURCES}
    acme_job = lifecycle("flight_delay", "acme").job("promotion_job", resources)
    assert acme_job.name == lifecycle().job("promotion_job", resources).name
    assert registry.tick(tenant="acme").run_requests == []
    [order] = registry.tick().run_requests
    before = registry.tags(version)
    with pytest.raises(PromotionRefused, match="promotes acme.flight_delay versions, not demo"):
        acme_job.execute_in_process(run_config=order.run_config)
    assert registry.tags(version) == before and before[STAGE_TAG] == "Staging"
    assert registry.run(order).success
    assert registry.stage(version) == "Production"


def _decide_in_the_ui(registry, version: str, approver: str, decision: str = "approved"):
    """What a person does in the MLflow UI: set the decision tags by hand."""
    registry.client.set_model_version_tag(MODEL, version, DECISION_BY, approver)
    registry.client.set_model_version_tag(MODEL, version, DECISION, decision)


@pytest.mark.parametrize(
    ("evaluation", "approver", "decision", "status", "reason"),
    [
        ("passed", "mallory", "approved", "refused", "mallory is not a designated approver"),
        ("failed", "dave", "approved", "refused", "evaluation did not pass (failed)"),
        ("passed", "", "approved", "refused", "names no approver"),
        ("passed", "dave", "approved", "refused", "no audit record of the approval by dave"),
        ("passed", "dave", "rejected", "rejected", None),
    ],
)
def test_decisions_made_in_the_ui_are_checked_by_the_sensor(
    registry, evaluation, approver, decision, status, reason
):
    version = registry.add_version(evaluation=evaluation)
    request_production(registry.client, registry.audit, MODEL, version, "alice", "")
    _decide_in_the_ui(registry, version, approver, decision)
    assert registry.tick().run_requests == []
    tags = registry.tags(version)
    assert (tags[REQUEST_STATUS], tags[STAGE_TAG]) == (status, "Staging")
    if reason:
        assert reason in tags[DECISION_REASON]
    # Tags set by hand on a store without the governance app are no audited decision: a
    # refusal is recorded with its reason, a rejection closes the request and nothing more.
    assert registry.audit.history(MODEL)[-1].action == ("refusal" if reason else "request")


def test_malformed_request_tags_are_refused_with_the_tag_named(registry):
    version = registry.add_version()
    registry.client.set_model_version_tag(MODEL, version, REQUEST_STAGE, "Prod")
    registry.client.set_model_version_tag(MODEL, version, REQUEST_BY, "alice")
    registry.client.set_model_version_tag(MODEL, version, REQUEST_STATUS, "pending")
    assert registry.tick().run_requests == []
    reason = registry.tags(version)[DECISION_REASON]
    assert "facilflow.request.stage='Prod' is not one of" in reason
    assert registry.stage(version) == "Staging"


def test_rollback_is_a_request_approved_like_any_other_and_history_answers_at(registry):
    first, second = registry.add_version(), registry.add_version()
    transition(registry.client, registry.audit, MODEL, first, Stage.PRODUCTION, "ops", "v1")
    between = datetime.now(UTC)
    transition(registry.client, registry.audit, MODEL, second, Stage.PRODUCTION, "ops", "v2")
    target = rollback_target(registry.client, registry.audit.history(MODEL), MODEL)
    assert target == first
    request_production(registry.client, registry.audit, MODEL, first, "carol", "v2 misbehaves")
    assert registry.stage(first) == "Archived"  # nothing moves before an approval
    with pytest.raises(GovernanceError, match="carol requested this transition"):
        decide(
            registry.client, registry.audit, MODEL, first, "carol", Decision.APPROVED, "", APPROVERS
        )
    decide(
        registry.client, registry.audit, MODEL, first, "dave", Decision.APPROVED, "ok", APPROVERS
    )
    [order] = registry.tick().run_requests
    assert registry.run(order).success
    assert (registry.stage(first), registry.stage(second)) == ("Production", "Archived")
    records = registry.audit.history(MODEL)
    assert (records[-2].action, records[-2].version, records[-2].actor) == (
        "rollback",
        first,
        "dave",
    )
    assert production_at(records, between) == first
    assert production_at(records, records[1].at) == second
    assert production_at(records, datetime(2000, 1, 1, tzinfo=UTC)) is None


def test_a_version_that_never_held_production_is_no_rollback_target(registry):
    archived, staged = registry.add_version(), registry.add_version()
    assert registry.stage(archived) == "Archived"  # the second took the staging alias
    with pytest.raises(GovernanceError, match="never held Production with these files"):
        request_production(registry.client, registry.audit, MODEL, archived, "carol", "")
    with pytest.raises(GovernanceError, match="no version in Production to roll back"):
        rollback_target(registry.client, registry.audit.history(MODEL), MODEL)
    assert registry.stage(staged) == "Staging"


def test_the_models_cli_lists_requests_and_tells_the_history(registry, monkeypatch):
    version = registry.add_version()
    home = str(registry.home)
    runner = CliRunner()
    monkeypatch.setenv("FACILFLOW_USER", "alice")
    requested = runner.invoke(
        main, ["--home", home, "models", "request", version, "--comment", "x"]
    )
    assert requested.exit_code == 0, requested.output
    listed = runner.invoke(main, ["--home", home, "models", "list"])
    assert f"| {version} | Staging | staging | alice |" in listed.output
    refused = runner.invoke(main, ["--home", home, "models", "approve", version, "--comment", "y"])
    assert refused.exit_code != 0
    assert "alice is not a designated approver" in refused.output
    monkeypatch.setenv("FACILFLOW_USER", "dave")
    approved = runner.invoke(
        main, ["--home", home, "models", "approve", version, "--comment", "ok"]
    )
    assert approved.exit_code == 0, approved.output
    history = runner.invoke(
        main, ["--home", home, "models", "history", "--at", datetime.now(UTC).isoformat()]
    )
    assert "| request |" in history.output
    assert "In Production at" in history.output and "no version" in history.output
    missing = runner.invoke(main, ["--home", home, "models", "request", "42", "--comment", "z"])
    assert missing.exit_code != 0 and "has no version 42" in missing.output


def test_the_models_cli_on_a_fresh_home_says_how_versions_come(tmp_path):
    runner = CliRunner()
    for command in ("list", "history"):
        answer = runner.invoke(main, ["--home", str(tmp_path / "fresh"), "models", command])
        assert answer.exit_code == 0, answer.output
        assert answer.stdout.startswith("demo.flight_delay has no "), answer.output
        assert "`make demo`" in answer.stdout


def _race(registry_client_factory, audit_factory, versions: list[str]) -> None:
    """Promote every version in its own thread, all released at once."""
    barrier = threading.Barrier(len(versions))
    errors: list[BaseException] = []

    def promote(version: str) -> None:
        client = registry_client_factory()
        audit = audit_factory(client)
        barrier.wait(timeout=30)
        try:
            transition(client, audit, MODEL, version, Stage.PRODUCTION, f"u{version}", "race")
        except BaseException as error:  # noqa: BLE001 - collected and re-raised below
            errors.append(error)

    threads = [threading.Thread(target=promote, args=(v,)) for v in versions]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=120)
    assert not errors, errors


def _exactly_one_in_production(client) -> str:
    tagged = client.search_model_versions(f"name = '{MODEL}' and tags.`{STAGE_TAG}` = 'Production'")
    holder = client.get_model_version_by_alias(MODEL, "production")
    assert [str(v.version) for v in tagged] == [str(holder.version)]
    return str(holder.version)


def test_two_approvals_landing_together_leave_one_version_in_production_sqlite(registry):
    versions = [registry.add_version(stage=Stage.NONE) for _ in range(2)]
    tracking = registry.resources["mlflow"]
    _race(tracking.client, lambda c: AuditTrail(c, SCOPE.audit_experiment_name), versions)
    assert _exactly_one_in_production(registry.client) in versions


@pytest.mark.slow
def test_ten_concurrent_promotions_five_times_on_postgresql(tmp_path):
    with mlflow_server(tmp_path / "artifacts") as url:
        tracking = MlflowResource(tracking_uri=url, artifact_root="mlflow-artifacts:/")
        client = tracking.client()
        client.create_registered_model(MODEL)
        experiment_id = tracking.ensure_experiment(SCOPE).experiment_id
        run = client.create_run(experiment_id)
        run_id, source = run.info.run_id, f"{run.info.artifact_uri}/model"
        audit_name = SCOPE.audit_experiment_name
        winners = []
        for _ in range(ROUNDS):
            versions = [
                str(client.create_model_version(MODEL, source, run_id=run_id).version)
                for _ in range(10)
            ]
            _race(tracking.client, lambda c: AuditTrail(c, audit_name), versions)
            winners.append(_exactly_one_in_production(client))
        assert len(set(winners)) == ROUNDS


def test_an_approval_for_a_failed_or_unstaged_version_is_refused_at_once(registry):
    failed = registry.add_version(evaluation="failed")
    request_production(registry.client, registry.audit, MODEL, failed, "alice", "")
    with pytest.raises(GovernanceError, match="evaluation did not pass \\(failed\\)"):
        decide(
            registry.client, registry.audit, MODEL, failed, "dave", Decision.APPROVED, "", APPROVERS
        )
    assert DECISION not in registry.tags(failed)
    registry.add_version()  # takes the staging alias: the requested version is archived
    with pytest.raises(GovernanceError, match="never held Production with these files"):
        decide(
            registry.client, registry.audit, MODEL, failed, "dave", Decision.APPROVED, "", APPROVERS
        )
    assert DECISION not in registry.tags(failed)


def test_each_step_of_the_workflow_is_one_lifecycle_event_on_kafka(registry, broker):
    events = EventsResource(
        outbox_url=registry.resources["events"].outbox_url,
        bootstrap_servers=broker.bootstrap_servers,
    )
    registry.resources["events"] = events
    old = registry.add_version()
    transition(registry.client, registry.audit, MODEL, old, Stage.PRODUCTION, "ops", "first")
    new = registry.add_version()
    cli = CliRunner()
    home = ["--home", str(registry.home)]
    asked = cli.invoke(
        main,
        [*home, "models", "request", new, "--comment", "AUC +2%"],
        env={"FACILFLOW_USER": "carol"},
    )
    assert asked.exit_code == 0, asked.output
    registry.tick()  # sees the request again: no second notification
    registry.approve(new, "dave", "metrics hold up")
    [order] = registry.tick().run_requests
    registry.tick()
    assert registry.run(order).success
    rejected = registry.add_version()
    request_production(registry.client, registry.audit, MODEL, rejected, "alice", "")
    _decide_in_the_ui(registry, rejected, "dave", "rejected")
    registry.tick()
    refused = registry.add_version()
    request_production(registry.client, registry.audit, MODEL, refused, "alice", "")
    _decide_in_the_ui(registry, refused, "mallory")
    registry.tick()

    assert events.relay().published == 7
    with EventReader(broker.bootstrap_servers, events.topic) as reader:
        received = list(reader.events(idle_s=1.5))
    seen = [(e.type.value, e.version, e.payload) for e in received]
    scopes = {(e.tenant, e.use_case, e.model) for e in received}
    by_kind = {(kind, version): payload for kind, version, payload in seen}
    assert len(seen) == len(by_kind) == 7
    assert scopes == {("demo", "flight_delay", MODEL)}
    assert by_kind[("MODEL_TRANSITION_REQUESTED", new)]["approvers"] == APPROVERS
    assert by_kind[("MODEL_TRANSITION_REQUESTED", new)]["requested_by"] == "carol"
    assert by_kind[("MODEL_TRANSITION_APPROVED", new)]["approved_by"] == "dave"
    promoted = by_kind[("MODEL_PROMOTED", new)]
    assert (promoted["previous_version"], promoted["by"]) == (old, "dave")
    assert by_kind[("MODEL_TRANSITION_REJECTED", rejected)]["reason"] == ""
    reason = by_kind[("MODEL_TRANSITION_REJECTED", refused)]["reason"]
    assert "mallory is not a designated approver" in reason
    assert {("MODEL_TRANSITION_REQUESTED", v) for v in (rejected, refused)} <= set(by_kind)
    assert [kind for kind, version, _ in seen if version == new] == [
        "MODEL_TRANSITION_REQUESTED",
        "MODEL_TRANSITION_APPROVED",
        "MODEL_PROMOTED",
    ]


def test_redeploy_sensor_requests_one_deployment_per_audited_move_of_the_production_alias(
    registry,
):
    def tick(cursor):
        return tick_sensor(registry.resources, "redeploy_sensor", cursor=cursor)

    assert "has no Production version" in tick(None).skip_message
    first, second = registry.add_version(), registry.add_version()
    transition(registry.client, registry.audit, MODEL, first, Stage.PRODUCTION, "ops", "v1")
    deployed = tick(None)
    [request] = deployed.run_requests
    assert request.run_key == f"deploy:{MODEL}:v{first}:after:none"
    assert "is the deployed Production version" in tick(deployed.cursor).skip_message
    transition(registry.client, registry.audit, MODEL, second, Stage.PRODUCTION, "ops", "v2")
    [promoted] = tick(deployed.cursor).run_requests
    assert promoted.run_key == f"deploy:{MODEL}:v{second}:after:{first}"
    transition(
        registry.client,
        registry.audit,
        MODEL,
        first,
        Stage.PRODUCTION,
        "ops",
        "back",
        action="rollback",
    )
    [rolled_back] = tick(second).run_requests
    assert rolled_back.run_key == f"deploy:{MODEL}:v{first}:after:{second}"

    # The alias moved with no record of the move: reported, not deployed.
    move_to_stage(registry.client, MODEL, second, Stage.PRODUCTION)
    forged = tick(first)
    assert forged.run_requests == [] and "not deployed" in forged.skip_reason.skip_message
    [check] = forged.asset_events
    assert (check.check_name, check.passed) == ("audit_trail_confirms_stages", False)
    assert check.asset_key == lifecycle().keys.registered_model_version
    assert check.asset_key.to_user_string() == "demo/flight_delay/registry/registered_model_version"
    assert f"points at version {second}" in check.description
    waiting = registry.resources["events"].outbox().waiting(limit=100)
    assert waiting[-1].event_type == "MODEL_GOVERNANCE_VIOLATION"


def _report_drift(instance, kind: str, day: str, version: str, drifted: bool) -> None:
    keys = lifecycle().keys
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key={"feature": keys.feature_drift, "prediction": keys.prediction_drift}[kind],
            partition=day,
            metadata={"drifted": drifted, "model_version": version},
        )
    )


def test_drift_retraining_sensor_applies_the_policy_once_per_production_version(registry):
    instance = dg.DagsterInstance.ephemeral()

    def tick(policy: RetrainingPolicyResource):
        resources = {**registry.resources, "retraining": policy}
        return tick_sensor(resources, "drift_retraining_sensor", instance=instance)

    policy = RetrainingPolicyResource(on="feature", drifted_days=2, within_days=3)
    assert "has no Production version" in tick(policy).skip_message
    first = registry.add_version()
    transition(registry.client, registry.audit, MODEL, first, Stage.PRODUCTION, "ops", "v1")
    trained_by = registry.client.get_model_version(MODEL, first).run_id
    registry.client.log_param(trained_by, "train_start", "2013-03-01")
    _report_drift(instance, "feature", "2013-12-01", first, drifted=True)
    _report_drift(instance, "feature", "2013-12-02", first, drifted=False)
    _report_drift(instance, "prediction", "2013-12-02", first, drifted=True)  # not counted
    _report_drift(instance, "feature", "2013-12-03", "99", drifted=True)  # another version
    assert "feature: 1 of 2 day(s)" in tick(policy).skip_message
    _report_drift(instance, "feature", "2013-12-03", first, drifted=True)
    request = tick(policy)
    assert request.run_key == f"retrain:{MODEL}:v{first}"
    assert request.tags["facilflow/flagged_days"] == "2013-12-01,2013-12-03"
    assert request.tags["facilflow/trigger"] == "feature_drift"
    # Drift after the training window: the same window, over the refreshed training set.
    trained_model_op = lifecycle().op("trained_model")
    assert trained_model_op == "demo__flight_delay__training__trained_model"
    assert request.run_config == {"ops": {trained_model_op: {"config": {}}}}
    # Only the latest `within_days` days count: two clean days push 12-01 out of the window.
    for day in ("2013-12-04", "2013-12-05"):
        _report_drift(instance, "feature", day, first, drifted=False)
    assert "feature: 1 of 3 day(s)" in tick(policy).skip_message
    # A re-run of a day replaces its verdict: 12-05 drifted after all.
    _report_drift(instance, "feature", "2013-12-05", first, drifted=True)
    assert tick(policy).run_key == f"retrain:{MODEL}:v{first}"
    # Drifted winter days before the window: the retraining's window reaches back to them.
    for day in ("2013-01-20", "2013-01-22"):
        _report_drift(instance, "feature", day, first, drifted=True)
    widened = tick(RetrainingPolicyResource(on="feature", drifted_days=2, within_days=7))
    assert widened.run_config["ops"][trained_model_op]["config"] == {"train_start": "2013-01-01"}
    assert "no kind of drift" in tick(RetrainingPolicyResource(on="")).skip_message
    with pytest.raises(ValueError, match="unknown kind\\(s\\) labels"):
        tick(RetrainingPolicyResource(on="feature,labels"))
    with pytest.raises(ValueError, match="drifted_days \\(4\\) exceeds within_days \\(3\\)"):
        RetrainingPolicyResource(drifted_days=4, within_days=3)


def _report_quality(instance, day: str, scored: list[str], degraded: list[str], judged=True):
    instance.report_runless_asset_event(
        dg.AssetMaterialization(
            asset_key=lifecycle().keys.realized_quality,
            partition=day,
            metadata={"judged": judged, "scored_versions": scored, "degraded_versions": degraded},
        )
    )


def test_realized_quality_worse_than_the_holdout_retrains_when_the_policy_counts_it(registry):
    instance = dg.DagsterInstance.ephemeral()

    def tick(on: str):
        policy = RetrainingPolicyResource(on=on, drifted_days=2, within_days=7)
        resources = {**registry.resources, "retraining": policy}
        return tick_sensor(resources, "drift_retraining_sensor", instance=instance)

    version = registry.add_version()
    transition(registry.client, registry.audit, MODEL, version, Stage.PRODUCTION, "ops", "v1")
    _report_quality(instance, "2013-12-01", [version], [version])
    _report_quality(instance, "2013-12-02", [version, "99"], ["99"])  # another version's
    _report_quality(instance, "2013-12-03", [version], [version], judged=False)  # not due
    _report_quality(instance, "2013-12-04", ["99"], ["99"])  # not scored by this version
    assert "quality: 1 of 2 day(s)" in tick("quality").skip_message
    _report_quality(instance, "2013-12-03", [version], [version])  # judged once due
    request = tick("quality")
    assert request.run_key == f"retrain:{MODEL}:v{version}"
    assert request.tags["facilflow/trigger"] == "quality_degraded"
    assert request.tags["facilflow/flagged_days"] == "2013-12-01,2013-12-03"
    assert "feature: 0 of 0 day(s)" in tick("feature").skip_message  # quality not counted
