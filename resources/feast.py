"""The Feast feature store of a tenant's use case, over FacilFlow's working directory."""

import contextlib
import sys
from pathlib import Path
from typing import Literal

from dagster import ConfigurableResource
from feast import FeatureStore, FeatureView, FileSource, RepoConfig
from feast.repo_contents import RepoContents
from feast.repo_operations import apply_total_with_repo_instance, parse_repo
from pydantic import Field

from resources.storage import StorageResource
from resources.tenancy import TenantResource

POLARS_OFFLINE_STORE = "facilflow_assets.features.polars_offline_store.PolarsOfflineStore"


class FeastResource(ConfigurableResource):
    """Feast definitions from `repo_path`, state under the working directory.

    The registry and the sqlite online store are `<home>/feast/<project>.registry.db` and
    `<project>.online.db`; the project is the tenant's. (One folder deep, as the `feast`
    CLI creates only the registry's own folder.) Every file source of the repository is pointed at
    `<home>/features/`, where the feature table assets write.
    """

    repo_path: str = Field(description="The Feast repository holding the definitions.")
    storage: StorageResource
    tenant: TenantResource
    online_store: Literal["sqlite", "redis"] = "sqlite"
    redis_url: str | None = Field(
        default=None, description="host:port[,db=N] of the Redis online store."
    )
    offline_store: str = Field(
        default=POLARS_OFFLINE_STORE,
        description="Offline store type: the polars store, or Feast's own (e.g. 'duckdb').",
    )

    @property
    def state_dir(self) -> Path:
        return self.storage.root / "feast"

    @property
    def registry_path(self) -> Path:
        return self._state_file("registry")

    def _state_file(self, kind: str) -> Path:
        return self.state_dir / f"{self.tenant.feast_project}.{kind}.db"

    def repo_config(self) -> RepoConfig:
        if self.online_store == "redis":
            if not self.redis_url:
                raise ValueError("online_store 'redis' needs redis_url (FACILFLOW_REDIS_URL)")
            online = {"type": "redis", "connection_string": self.redis_url}
        else:
            online = {"type": "sqlite", "path": str(self._state_file("online"))}
        return RepoConfig(
            project=self.tenant.feast_project,
            provider="local",
            registry=str(self.registry_path),
            online_store=online,
            offline_store={"type": self.offline_store},
            entity_key_serialization_version=3,
            repo_path=self.storage.features_dir,
        )

    def feature_store(self) -> FeatureStore:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        return FeatureStore(config=self.repo_config())

    def definitions(self) -> RepoContents:
        """The repository's objects, with every file source in this working directory."""
        contents = load_feature_repo(Path(self.repo_path))
        views = [FeatureView.from_proto(view.to_proto()) for view in contents.feature_views]
        for view in views:
            if isinstance(view.batch_source, FileSource):
                view.batch_source.file_options.uri = str(
                    self.storage.features_dir / Path(view.batch_source.path).name
                )
        by_name = {view.batch_source.name: view.batch_source for view in views}
        return contents._replace(
            feature_views=views,
            data_sources=[by_name.get(s.name, s) for s in contents.data_sources],
        )

    def apply(self) -> RepoContents:
        """Make the registry match the repository (create, update, delete), as `feast apply`."""
        store = self.feature_store()
        contents = self.definitions()
        apply_total_with_repo_instance(
            store, store.project, store.registry, contents, skip_source_validation=False
        )
        return contents


def load_feature_repo(repo_path: Path) -> RepoContents:
    """Parse a Feast repository exactly as the `feast` CLI does from inside it."""
    repo_path = repo_path.resolve()
    if str(repo_path) not in sys.path:
        sys.path.append(str(repo_path))
    # Feast names the repository's modules relative to the working directory.
    with contextlib.chdir(repo_path):
        return parse_repo(repo_path)
