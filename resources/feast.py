"""The Feast feature stores of a tenant's use cases, one project each, over FacilFlow's
working directory."""

from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from feast import FeatureStore, FeatureView, RepoConfig
from feast.repo_contents import RepoContents
from feast.repo_operations import apply_total_with_repo_instance
from pydantic import Field

from facilflow_assets.scope import ModelScope
from resources.storage import StorageResource

POLARS_OFFLINE_STORE = "facilflow_assets.features.polars_offline_store.PolarsOfflineStore"


class FeastResource(ConfigurableResource):
    """A Feast project per use case (`<tenant>_<use case>`), its objects built from the
    use-case file.

    The registry and the sqlite online store are `<home>/feast/<project>.registry.db` and
    `<project>.online.db` (one folder deep, as the `feast` CLI creates only the registry's
    own folder).
    """

    storage: StorageResource
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str | None = Field(
        default=None, description="host:port[,db=N] of the Redis online store."
    )
    offline_store: str = Field(
        default=POLARS_OFFLINE_STORE,
        description="Offline store type: the polars store, or Feast's own (e.g. 'duckdb').",
    )
    ray_address: str | None = Field(
        default=None,
        description="A Ray cluster on which the polars store joins training sets, split by "
        "entity; in the step's process when unset.",
    )

    @property
    def state_dir(self) -> Path:
        return self.storage.root / "feast"

    def registry_path(self, scope: ModelScope) -> Path:
        return self._state_file(scope, "registry")

    def _state_file(self, scope: ModelScope, kind: str) -> Path:
        return self.state_dir / f"{scope.feast_project}.{kind}.db"

    def repo_settings(self, scope: ModelScope) -> dict[str, object]:
        """The scope's store settings, as a `feature_store.yaml` holds them."""
        if self.online_store == "redis":
            if not self.redis_url:
                raise ValueError("online_store 'redis' needs redis_url (FACILFLOW_REDIS_URL)")
            online = {"type": "redis", "connection_string": self.redis_url}
        else:
            online = {"type": "sqlite", "path": str(self._state_file(scope, "online"))}
        return {
            "project": scope.feast_project,
            "provider": "local",
            "registry": str(self.registry_path(scope)),
            "online_store": online,
            "offline_store": self._offline_settings(),
            "entity_key_serialization_version": 3,
        }

    def _offline_settings(self) -> dict[str, str]:
        if self.offline_store != POLARS_OFFLINE_STORE or not self.ray_address:
            return {"type": self.offline_store}
        return {"type": self.offline_store, "ray_address": self.ray_address}

    def repo_config(self, scope: ModelScope) -> RepoConfig:
        return RepoConfig(
            **self.repo_settings(scope), repo_path=self.storage.files(scope).features_dir
        )

    def feature_store(self, scope: ModelScope) -> FeatureStore:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return FeatureStore(config=self.repo_config(scope))

    def apply(self, scope: ModelScope, contents: RepoContents) -> list[str]:
        """Make the scope's registry match `contents` (create, update, delete), as
        `feast apply` does with a repository. Returns the views whose features or entities
        changed: they are applied afresh, without Feast's record of what the online store
        loaded (which Feast keeps across such a change), so that the next load of the
        online store is a full one and not an incremental one that never fills the new
        columns."""
        store = self.feature_store(scope)
        existing = {view.name: view for view in store.list_feature_views()}
        changed = [
            view.name
            for view in contents.feature_views
            if view.name in existing and _schema(view) != _schema(existing[view.name])
        ]
        for name in changed:
            store.registry.delete_feature_view(name, store.project)
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=False
        )
        return sorted(changed)


def _schema(view: FeatureView) -> tuple:
    """What the online store holds of a view: its features with their types, by entity."""
    features = sorted((f.name, str(f.dtype)) for f in view.features)
    return features, sorted(view.entities), sorted(c.name for c in view.entity_columns)
