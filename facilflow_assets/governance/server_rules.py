"""The governance server app's rules, one per kind of state-writing MLflow route.

Every route that can write registry, run, experiment or artifact state is listed in
`RULES` (a rule decides who may) or in `ALLOWED` (why no lifecycle state is at stake);
a writing route in neither is refused to everyone but the service accounts, and the
route-coverage test fails on it. Routes are named by their view function (Flask) or
route name (FastAPI), so every API prefix, version and `--static-prefix` is covered.

Reserved state, writable only as the rules below say:
- aliases `production` and `staging`, and every `facilflow.*` tag of a registered model,
  version, run, experiment or logged model: the service accounts only, except
- the request tags `facilflow.request.*`: the requesting user, for their own request;
- the decision tags `facilflow.decision*`: a designated approver of the model's tenant who
  is not the requester, once per request;
- registered models named like a tenant's (`<tenant>.<use_case>`) are created, renamed and
  deleted by the service accounts only, and so are their versions deleted;
- audit experiments (`.../audit`) and their runs are the server side's alone;
- the files of a registered version are not written through the server.
The `production` alias moves only to a version whose approval the audit trail confirms.
"""

import posixpath
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime
from urllib.parse import urlparse

from mlflow.entities.model_registry import ModelVersion, ModelVersionTag
from mlflow.exceptions import MlflowException

from facilflow_assets.approvers import approvers_of
from facilflow_assets.governance.audit import (
    AuditTrail,
    audit_experiment_of,
    is_audit_experiment,
)
from facilflow_assets.governance.digest import DIGEST_TAG
from facilflow_assets.governance.integrity import unconfirmed_decision
from facilflow_assets.governance.requests import (
    DECISION,
    DECISION_AT,
    DECISION_BY,
    DECISION_COMMENT,
    REQUEST_AT,
    REQUEST_BY,
    REQUEST_COMMENT,
    REQUEST_STAGE,
    REQUEST_STATUS,
    Decision,
    RequestStatus,
    read_request,
    record_decision,
    record_request,
    request_eligibility,
)
from facilflow_assets.governance.stages import Stage
from facilflow_assets.governance.tenant_access import (
    TenantAccess,
    tenant_of_experiment,
    tenant_of_model,
)

RESERVED_PREFIX = "facilflow."
RESERVED_ALIASES = {s.alias for s in Stage if s.alias}
REQUEST_TAGS = {REQUEST_BY, REQUEST_STAGE, REQUEST_AT, REQUEST_COMMENT, REQUEST_STATUS}
DECISION_TAGS = {DECISION, DECISION_BY, DECISION_AT, DECISION_COMMENT}


class Refusal(Exception):
    """A write the rules refuse; the message says why, naming the rule."""


@dataclass
class Call:
    """One request to a writing route: who sends it, its parameters, and the server's stores."""

    user: str
    service: bool
    params: dict
    server: "ServerState"

    def service_only(self, what: str) -> None:
        if not self.service:
            raise Refusal(
                f"{what} is written by the FacilFlow service account only, not {self.user}"
            )


class ServerState:
    """The server's stores and settings, as the rules read and the app writes them."""

    def __init__(self, tracking, registry, audit_client, artifact_destination, settings):
        self.tracking = tracking
        self.registry = registry
        self.audit_client = audit_client  # an MlflowClient on the server's own store
        self.artifact_destination = artifact_destination
        self.settings = settings  # GovernanceSettings
        self.access: TenantAccess | None = None  # grants the audit experiments it creates

    def version(self, name: str, version: str) -> ModelVersion:
        try:
            return self.registry.get_model_version(name, str(version))
        except MlflowException as error:
            raise Refusal(error.message) from None

    def experiment_name(self, experiment_id: str) -> str:
        try:
            return self.tracking.get_experiment(str(experiment_id)).name
        except MlflowException:
            return ""

    def run_experiment_name(self, run_id: str) -> str:
        try:
            return self.experiment_name(self.tracking.get_run(run_id).info.experiment_id)
        except MlflowException:
            return ""

    def audit(self, model: str) -> AuditTrail:
        name = audit_experiment_of(model)
        if self.tracking.get_experiment_by_name(name) is None:
            try:
                experiment_id = self.tracking.create_experiment(name)
            except MlflowException:  # created by another worker meanwhile
                pass
            else:
                if self.access is not None:
                    self.access.experiment_created(experiment_id, name)
        return AuditTrail(self.audit_client, name)

    def set_version_tag(self, version: ModelVersion, key: str, value: str) -> None:
        self.registry.set_model_version_tag(
            version.name, version.version, ModelVersionTag(key, value)
        )

    def registered_locations(self) -> list[str]:
        """Where the files of every registered version live, as comparable URIs."""
        locations, token = [], None
        while True:
            page = self.registry.search_model_versions(max_results=1000, page_token=token)
            locations += [self.normalise(v.source) for v in page if v.source]
            token = page.token
            if not token:
                return [location for location in locations if location]

    def normalise(self, uri: str) -> str:
        """`uri` as an absolute location: models:/ and runs:/ resolved, the proxy's
        mlflow-artifacts:/ mapped onto its destination, file URIs as paths."""
        try:
            if uri.startswith("models:/m-"):
                uri = self.tracking.get_logged_model(uri.removeprefix("models:/")).artifact_location
            elif uri.startswith("runs:/"):
                run_id, _, path = uri.removeprefix("runs:/").partition("/")
                uri = f"{self.tracking.get_run(run_id).info.artifact_uri.rstrip('/')}/{path}"
        except MlflowException:
            return ""
        parsed = urlparse(uri)
        if parsed.scheme == "mlflow-artifacts":
            uri = f"{self.artifact_destination.rstrip('/')}/{parsed.path.lstrip('/')}"
            parsed = urlparse(uri)
        if parsed.scheme in ("", "file"):
            return posixpath.normpath(parsed.path).rstrip("/")
        return uri.rstrip("/")


# --- the registry ------------------------------------------------------------------------


def _reserved(key: str) -> bool:
    return key.lower().startswith(RESERVED_PREFIX)


def _reserved_tags(call: Call, tags, what: str) -> None:
    keys = (
        [tag.get("key", "") for tag in tags or []] if isinstance(tags, list) else list(tags or {})
    )
    reserved = sorted(key for key in keys if _reserved(key))
    if reserved:
        call.service_only(f"{what} tags {', '.join(reserved)}")


def create_registered_model(call: Call) -> None:
    name = call.params.get("name", "")
    if tenant_of_model(name):
        call.service_only(f"the tenant model name '{name}'")
    _reserved_tags(call, call.params.get("tags"), f"registered model {name}")


def rename_registered_model(call: Call) -> None:
    for name in (call.params.get("name", ""), call.params.get("new_name", "")):
        if tenant_of_model(name):
            call.service_only(f"renaming to or from the tenant model name '{name}'")


def delete_registered_model(call: Call) -> None:
    name = call.params.get("name", "")
    if tenant_of_model(name):
        call.service_only(f"deleting the tenant model '{name}'")


def registered_model_tag(call: Call) -> None:
    if _reserved(call.params.get("key", "")):
        call.service_only(f"the registered model tag {call.params['key']}")


def create_model_version(call: Call) -> None:
    _reserved_tags(call, call.params.get("tags"), f"a new version of {call.params.get('name')}")


def delete_model_version(call: Call) -> None:
    name = call.params.get("name", "")
    if tenant_of_model(name):
        call.service_only(f"deleting a version of the tenant model '{name}'")


def registered_model_alias(call: Call) -> None:
    alias = call.params.get("alias", "").lower()
    if alias not in RESERVED_ALIASES:
        return
    name = call.params.get("name", "")
    call.service_only(f"the {alias} alias of {name}")
    if alias == Stage.PRODUCTION.alias and call.params.get("version"):
        version = call.server.version(name, call.params["version"])
        problem = _unconfirmed_approval(call, version)
        if problem:
            raise Refusal(f"the production alias moves only after an audited approval: {problem}")


def _unconfirmed_approval(call: Call, version: ModelVersion) -> str:
    request = read_request(version)
    if request is None or request.decision != Decision.APPROVED:
        return f"{version.name} version {version.version} has no approved request"
    records = call.server.audit(version.name).history(version.name)
    return unconfirmed_decision(records, request, version.tags.get(DIGEST_TAG, ""))


def transition_stage(call: Call) -> None:
    raise Refusal(
        "MLflow's stage field is not how FacilFlow keeps stages (tags and aliases, moved by "
        "the promotion job); transition-stage is refused"
    )


def model_version_tag(call: Call) -> None:
    key = call.params.get("key", "")
    if not _reserved(key):
        return
    deleting = "value" not in call.params
    version = call.server.version(call.params.get("name", ""), call.params.get("version", ""))
    if key in REQUEST_TAGS and not call.service:
        _request_tag(call, version, key, deleting)
    elif key in DECISION_TAGS and not deleting:
        _decision_tag(call, version, key)
    else:
        call.service_only(f"the version tag {key}")


def _request_tag(call: Call, version: ModelVersion, key: str, deleting: bool) -> None:
    """The requester writes their own request; a new one only when none is pending."""
    tags, user, value = version.tags, call.user, call.params.get("value", "")
    where = f"{version.name} version {version.version}"
    if tags.get(REQUEST_STATUS) == RequestStatus.PENDING:
        raise Refusal(f"{where} has a pending request by {tags.get(REQUEST_BY)}; it is not changed")
    if key == REQUEST_BY and not deleting:
        if value != user:
            raise Refusal(f"{REQUEST_BY} must name the authenticated user {user}, not '{value}'")
        return
    if tags.get(REQUEST_BY) != user:
        raise Refusal(f"{key}: only the user named in {REQUEST_BY} writes the request's tags")
    if deleting or key in (REQUEST_AT, REQUEST_COMMENT):
        return
    if key == REQUEST_STAGE:
        if value != Stage.PRODUCTION:
            raise Refusal(f"{REQUEST_STAGE} must be Production, not '{value}'")
        return
    if value != RequestStatus.PENDING:
        raise Refusal(f"{REQUEST_STATUS}={value} is set by the FacilFlow service account only")
    audit = call.server.audit(version.name)
    problem = request_eligibility(version, audit.history(version.name))
    if problem:
        raise Refusal(f"{where}: {problem}")
    # The request is made: its time is the server's, stale decisions go, and it is recorded.
    requested_at = _now()
    call.server.set_version_tag(version, REQUEST_AT, requested_at)
    for stale in sorted(DECISION_TAGS & set(tags)):
        call.server.registry.delete_model_version_tag(version.name, version.version, stale)
    record_request(audit, version, user, tags.get(REQUEST_COMMENT, ""), requested_at)


def _decision_tag(call: Call, version: ModelVersion, key: str) -> None:
    """A designated approver of the tenant, not the requester, decides a pending request once."""
    tags, user, value = version.tags, call.user, call.params.get("value", "")
    where = f"{version.name} version {version.version}"
    approvers = approvers_of(call.server.settings.approvers, version.name)
    if user not in approvers:
        raise Refusal(
            f"{user} is not a designated approver of {version.name}; only its approvers decide"
        )
    if tags.get(REQUEST_BY) == user:
        raise Refusal(f"{user} requested this transition and cannot decide it")
    if tags.get(REQUEST_STATUS) != RequestStatus.PENDING:
        raise Refusal(f"{where} has no pending request to decide")
    if DECISION in tags:
        raise Refusal(
            f"{where}: the request was already {tags[DECISION]} by {tags.get(DECISION_BY)}"
        )
    if key == DECISION_BY and value != user:
        raise Refusal(f"{DECISION_BY} must name the authenticated user {user}, not '{value}'")
    if key != DECISION:
        return
    try:
        decision = Decision(value)
    except ValueError:
        raise Refusal(f"{DECISION} must be approved or rejected, not '{value}'") from None
    decided_at = _now()
    call.server.set_version_tag(version, DECISION_BY, user)
    call.server.set_version_tag(version, DECISION_AT, decided_at)
    audit = call.server.audit(version.name)
    record_decision(audit, version, user, decision, tags.get(DECISION_COMMENT, ""), decided_at)


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="milliseconds")


# --- experiments, runs and logged models -------------------------------------------------


def create_experiment(call: Call) -> None:
    name = call.params.get("name", "")
    if is_audit_experiment(name):
        call.service_only(f"the audit experiment {name}")
    _tenant_members_only(call, name)
    _reserved_tags(call, call.params.get("tags"), f"experiment {name}")


def experiment_write(call: Call) -> None:
    """Rename, delete, restore or tag an experiment: never an audit experiment, and into a
    tenant's names only by its members."""
    name = call.server.experiment_name(call.params.get("experiment_id", ""))
    for touched in (name, call.params.get("new_name", "")):
        if is_audit_experiment(touched):
            call.service_only(f"the audit experiment {touched}")
    _tenant_members_only(call, call.params.get("new_name", ""))
    if _reserved(call.params.get("key", "")):
        call.service_only(f"the experiment tag {call.params['key']}")


def _tenant_members_only(call: Call, experiment: str) -> None:
    """An experiment named for a tenant the settings name (`/<tenant>/...`) is its members'
    (its users, approvers and service accounts): its users are granted to read it."""
    settings = call.server.settings
    tenant = tenant_of_experiment(experiment)
    if tenant in settings.tenants() and call.user not in settings.members_of(tenant):
        raise Refusal(f"{experiment} is tenant {tenant}'s; {call.user} is not one of its members")


def create_run(call: Call) -> None:
    name = call.server.experiment_name(call.params.get("experiment_id", ""))
    if is_audit_experiment(name):
        call.service_only(f"a run in the audit experiment {name}")
    _reserved_tags(call, call.params.get("tags"), "the new run's")


def run_write(call: Call) -> None:
    """Any write to a run: never to an audit record, never a reserved tag."""
    run_id = call.params.get("run_id") or call.params.get("run_uuid") or ""
    name = call.server.run_experiment_name(run_id)
    if is_audit_experiment(name):
        call.service_only(f"the audit record {run_id}")
    if _reserved(call.params.get("key", "")):
        call.service_only(f"the run tag {call.params['key']}")
    _reserved_tags(call, call.params.get("tags"), f"run {run_id}")
    if call.params.get("path"):  # an upload into the run's artifacts
        _artifact_location(call, f"{_run_artifacts(call, run_id)}/{call.params['path']}")


def logged_model_write(call: Call) -> None:
    model_id = call.params.get("model_id", "")
    if model_id:
        location = call.server.normalise(f"models:/{model_id}")
        if location and _holds_registered_files(call, location):
            call.service_only(f"the logged model {model_id} of a registered version")
        if call.params.get("path"):
            _artifact_location(call, f"{location}/{call.params['path']}")
    else:
        name = call.server.experiment_name(call.params.get("experiment_id", ""))
        if is_audit_experiment(name):
            call.service_only(f"a logged model in the audit experiment {name}")
    _reserved_tags(call, call.params.get("tags"), f"logged model {model_id}")
    if _reserved(call.params.get("tag_key", "")):
        call.service_only(f"the logged model tag {call.params['tag_key']}")


def _run_artifacts(call: Call, run_id: str) -> str:
    try:
        return call.server.tracking.get_run(run_id).info.artifact_uri.rstrip("/")
    except MlflowException as error:
        raise Refusal(error.message) from None


# --- artifacts ---------------------------------------------------------------------------


def proxied_artifact_write(call: Call) -> None:
    path = posixpath.normpath(call.params.get("artifact_path", "").lstrip("/"))
    if path.startswith(".."):
        raise Refusal(f"artifact path '{path}' leaves the artifact store")
    _artifact_location(call, f"mlflow-artifacts:/{path}")


def _artifact_location(call: Call, uri: str) -> None:
    location = call.server.normalise(uri)
    if _holds_registered_files(call, location):
        call.service_only(f"{location}, which holds a registered version's files,")


def _holds_registered_files(call: Call, location: str) -> bool:
    """Whether writing at `location` would change a registered version's files."""
    return any(
        location == held or location.startswith(held + "/") or held.startswith(location + "/")
        for held in call.server.registered_locations()
    )


def service_only(call: Call) -> None:
    call.service_only("this administration route (FacilFlow uses none of it)")


# Routes by what they write, named as MLflow names their views and FastAPI routes.
RUN_WRITES = """
_update_run _delete_run _restore_run _set_tag _delete_tag _log_metric _log_param _log_batch
_log_inputs _log_outputs _log_model serve_upload_artifact
""".split()

LOGGED_MODEL_WRITES = """
_create_logged_model _finalize_logged_model _delete_logged_model _log_logged_model_params
_set_logged_model_tags _delete_logged_model_tag
""".split()

ADMINISTRATION = """
_create_webhook _update_webhook _delete_webhook _test_webhook _create_workspace_handler
_update_workspace_handler _delete_workspace_handler _generate_demo _delete_demo _cancel_job
submit_job cancel_job serve_create_promptlab_run serve_gateway_proxy
_create_prompt_optimization_job _delete_prompt_optimization_job
_cancel_prompt_optimization_job _invoke_genai_evaluate_handler
_invoke_issue_detection_handler _invoke_scorer_handler _upsert_online_scoring_config
_register_scorer _delete_scorer _create_gateway_endpoint _update_gateway_endpoint
_delete_gateway_endpoint _set_gateway_endpoint_tag _delete_gateway_endpoint_tag
_attach_model_to_gateway_endpoint _detach_model_from_gateway_endpoint
_create_gateway_endpoint_binding _delete_gateway_endpoint_binding
_create_gateway_model_definition _update_gateway_model_definition
_delete_gateway_model_definition _create_gateway_secret _update_gateway_secret
_delete_gateway_secret _create_budget_policy _update_budget_policy _delete_budget_policy
_create_gateway_guardrail _delete_gateway_guardrail _add_guardrail_to_endpoint
_remove_guardrail_from_endpoint _update_endpoint_guardrail_config invocations
chat_completions openai_passthrough_chat openai_passthrough_embeddings
typesafe_passthrough_system_one openai_passthrough_responses
openai_passthrough_responses_compact anthropic_passthrough_messages
gemini_passthrough_generate_content gemini_passthrough_stream_generate_content raw_proxy
send_message patch_session resolve_permission resolve_client_tool_result update_config
install_skills_endpoint create_mcp_server update_mcp_server delete_mcp_server
set_mcp_server_tag delete_mcp_server_tag set_mcp_server_alias delete_mcp_server_alias
create_mcp_server_version update_mcp_server_version delete_mcp_server_version
set_mcp_server_version_tag delete_mcp_server_version_tag create_mcp_access_endpoint
update_mcp_access_endpoint delete_mcp_access_endpoint
""".split()

GENAI_RECORDS = """
_deprecated_start_trace_v2 _deprecated_end_trace_v2 _start_trace_v3 _set_trace_tag
_delete_trace_tag _set_trace_tag_v3 _delete_trace_tag_v3 _delete_traces
_link_prompts_to_trace _link_traces_to_run _create_assessment _update_assessment
_delete_assessment _create_dataset_handler _delete_dataset_handler
_add_dataset_to_experiments_handler _remove_dataset_from_experiments_handler
_upsert_dataset_records_handler _delete_dataset_records_handler _set_dataset_tags_handler
_delete_dataset_tag_handler _create_issue _update_issue _create_label_schema
_update_label_schema _delete_label_schema _create_review_queue _update_review_queue
_delete_review_queue _get_or_create_user_queue _add_items_to_review_queue
_remove_items_from_review_queue _set_review_queue_item_status export_traces
""".split()

USER_ADMINISTRATION = """
create_user update_user_password update_user_admin delete_user grant_user_permission
revoke_user_permission create_role update_role delete_role add_role_permission
remove_role_permission update_role_permission assign_role unassign_role <lambda>
""".split()

Rule = Callable[[Call], None]

RULES: dict[str, Rule] = {
    # the registry
    "_create_registered_model": create_registered_model,
    "_rename_registered_model": rename_registered_model,
    "_delete_registered_model": delete_registered_model,
    "_set_registered_model_tag": registered_model_tag,
    "_delete_registered_model_tag": registered_model_tag,
    "_set_registered_model_alias": registered_model_alias,
    "_delete_registered_model_alias": registered_model_alias,
    "_create_model_version": create_model_version,
    "_delete_model_version": delete_model_version,
    "_set_model_version_tag": model_version_tag,
    "_delete_model_version_tag": model_version_tag,
    "_transition_stage": transition_stage,
    # experiments
    "_create_experiment": create_experiment,
    "_update_experiment": experiment_write,
    "_delete_experiment": experiment_write,
    "_restore_experiment": experiment_write,
    "_set_experiment_tag": experiment_write,
    "_delete_experiment_tag": experiment_write,
    # runs
    "_create_run": create_run,
    **dict.fromkeys(RUN_WRITES, run_write),
    # logged models (MLflow 3's model artifacts)
    **dict.fromkeys(LOGGED_MODEL_WRITES, logged_model_write),
    # artifacts through the server's proxy (Flask's routes and FastAPI's upload_artifact)
    "_upload_artifact": proxied_artifact_write,
    "upload_artifact": proxied_artifact_write,
    "_delete_artifact_mlflow_artifacts": proxied_artifact_write,
    "_create_multipart_upload_artifact": proxied_artifact_write,
    "_complete_multipart_upload_artifact": proxied_artifact_write,
    "_abort_multipart_upload_artifact": proxied_artifact_write,
    "_create_presigned_upload_url": lambda call: (
        logged_model_write(call) if call.params.get("model_id") else run_write(call)
    ),
    # administration FacilFlow does not use: outbound calls, secrets, server-side jobs
    **dict.fromkeys(ADMINISTRATION, service_only),
}

_READ = "a read sent as POST; it writes nothing"
_GENAI = "GenAI traces, assessments and evaluation data: no model lifecycle state"
_AUTH = "users, roles and permissions: MLflow's basic-auth app authorises these itself (admins)"
ALLOWED: dict[str, str] = {
    "_update_registered_model": "the description only: no stage, alias or tag",
    "_update_model_version": "the description only: no stage, alias or tag",
    "_get_latest_versions": _READ,
    "_search_experiments": _READ,
    "_search_runs": _READ,
    "_search_logged_models": _READ,
    "_search_traces_v3": _READ,
    "_batch_get_trace_infos": _READ,
    "_query_trace_metrics": _READ,
    "_calculate_trace_filter_correlation": _READ,
    "_search_evaluation_datasets_handler": _READ,
    "_search_issues": _READ,
    "_search_prompt_optimization_jobs": _READ,
    "serve_search_datasets": _READ,
    "search_jobs": _READ,
    "_create_presigned_download_url": _READ,
    "_not_implemented": "answers 'not implemented' and writes nothing",
    "_graphql": "MLflow's GraphQL mutations are searches only (the coverage test checks it)",
    "serve_post_ui_telemetry": "UI usage counters: no model lifecycle state",
    **dict.fromkeys(GENAI_RECORDS, _GENAI),
    **dict.fromkeys(USER_ADMINISTRATION, _AUTH),
}


def rule_for(endpoint: str) -> Rule | None:
    """The rule of a writing route; an unlisted one is for the service accounts only."""
    if endpoint in ALLOWED:
        return None
    return RULES.get(endpoint, _unlisted)


def _unlisted(call: Call) -> None:
    call.service_only("a route the governance app does not know")
