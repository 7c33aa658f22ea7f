"""The lifecycle stages of a registered version, kept with aliases and a tag.

MLflow 3 deprecates its stage API, so a version's stage is the tag `facilflow.stage`
(None, Staging, Production or Archived), and the Staging and Production versions are
also reachable by the aliases `staging` and `production` (`models:/<name>@production`).
An alias names one version: the version it leaves is archived.
"""

import time
from collections.abc import Callable
from enum import StrEnum

from mlflow.entities.model_registry import ModelVersion
from mlflow.exceptions import MlflowException
from mlflow.tracking import MlflowClient

STAGE_TAG = "facilflow.stage"
WRITE_ATTEMPTS = 5


class Stage(StrEnum):
    NONE = "None"
    STAGING = "Staging"
    PRODUCTION = "Production"
    ARCHIVED = "Archived"

    @property
    def alias(self) -> str | None:
        return self.value.lower() if self in (Stage.STAGING, Stage.PRODUCTION) else None


def version_in_stage(client: MlflowClient, name: str, stage: Stage) -> ModelVersion | None:
    """The version holding `stage`'s alias, if any."""
    if stage.alias is None:  # Archived and None: no alias, so no holder
        return None
    try:
        return client.get_model_version_by_alias(name, stage.alias)
    except MlflowException:
        return None


def move_to_stage(client: MlflowClient, name: str, version: str, stage: Stage) -> str | None:
    """Put `version` in `stage`. The version that held the stage's alias is archived; its
    number is returned (None if there was none)."""
    displaced = None
    if stage.alias:
        previous = version_in_stage(client, name, stage)
        _set_alias(client, name, stage.alias, version)
        if previous is not None and str(previous.version) != str(version):
            _set_stage_tag(client, name, previous.version, Stage.ARCHIVED)
            displaced = str(previous.version)
    for other in Stage:
        if other.alias and other != stage:
            holder = version_in_stage(client, name, other)
            if holder is not None and str(holder.version) == str(version):
                client.delete_registered_model_alias(name, other.alias)
    _set_stage_tag(client, name, version, stage)
    return displaced


def reconcile_stages(client: MlflowClient, name: str) -> list[str]:
    """Archive every version tagged Staging or Production that no longer holds the alias.

    Two transitions racing can each archive the alias holder they read before the other
    moved it; whichever reconciles last leaves the tags matching the aliases. Returns the
    versions archived.
    """
    archived = []
    for stage in (Stage.STAGING, Stage.PRODUCTION):
        holder = version_in_stage(client, name, stage)
        tagged = client.search_model_versions(f"name = '{name}' and tags.`{STAGE_TAG}` = '{stage}'")
        for version in tagged:
            if holder is None or str(version.version) != str(holder.version):
                _set_stage_tag(client, name, version.version, Stage.ARCHIVED)
                archived.append(str(version.version))
    return archived


def _set_alias(client: MlflowClient, name: str, alias: str, version: str) -> None:
    """Point `alias` at `version`."""
    _racing_write(lambda: client.set_registered_model_alias(name, alias, version))


def _set_stage_tag(client: MlflowClient, name: str, version: str, stage: Stage) -> None:
    _racing_write(lambda: client.set_model_version_tag(name, version, STAGE_TAG, stage))


def _racing_write(write: Callable[[], None]) -> None:
    """The store inserts or updates aliases and tags without a lock, so two writers racing
    may see a uniqueness conflict (which MLflow's SQL store reports as BAD_REQUEST); the
    loser retries and wins last. Any other error is raised at once."""
    for attempt in range(WRITE_ATTEMPTS):
        try:
            write()
            return
        except MlflowException as error:
            if error.error_code != "BAD_REQUEST" or attempt == WRITE_ATTEMPTS - 1:
                raise
            time.sleep(0.05 * (attempt + 1))
