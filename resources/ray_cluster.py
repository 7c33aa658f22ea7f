"""The Ray cluster that trains and tunes models, and where its checkpoints are kept."""

import contextlib
import os
from collections.abc import Iterator, Mapping
from urllib.parse import urlparse

import pyarrow.fs
import ray
from dagster import ConfigurableResource
from pydantic import Field

# Ray instances FacilFlow starts on this machine (training's, the endpoint's head) run
# without token authentication and usage reports. Ray reads the mode once per process, so
# it is set for the whole process and never taken back: a driver and a cluster that
# disagree on it cannot connect.
LOCAL_RAY_ENV = {"RAY_AUTH_MODE": "disabled", "RAY_USAGE_STATS_ENABLED": "0"}


class RayResource(ConfigurableResource):
    """Ray, started on this machine by default or joined when `address` names a cluster.

    Checkpoints of tuning trials and training workers go under `storage_path`: a local
    directory by default, an `s3://bucket/prefix` in production (endpoint in
    `s3_endpoint_url` for an S3-compatible store; credentials from the AWS_* variables).
    """

    address: str | None = Field(
        default=None,
        description="An existing cluster ('ray://host:10001' or 'host:6379'); local when unset.",
    )
    num_cpus: int | None = Field(
        default=None, description="CPUs of a local Ray instance; all of this machine's if unset."
    )
    storage_path: str = Field(description="Checkpoint root: a directory or an s3:// prefix.")
    s3_endpoint_url: str | None = Field(
        default=None, description="Endpoint of an S3-compatible store for s3:// checkpoints."
    )

    def session(self) -> contextlib.AbstractContextManager[Mapping[str, float]]:
        """Connect to (or start) Ray for the duration of a step; yields its resources."""
        return ray_session(self.address, self.num_cpus)

    def storage_filesystem(self) -> pyarrow.fs.FileSystem | None:
        """The filesystem for `storage_path`; None lets Ray pick the local one."""
        if urlparse(self.storage_path).scheme != "s3":
            return None
        if not self.s3_endpoint_url:
            return pyarrow.fs.S3FileSystem()
        endpoint = urlparse(self.s3_endpoint_url)
        return pyarrow.fs.S3FileSystem(
            endpoint_override=endpoint.netloc or endpoint.path, scheme=endpoint.scheme or "https"
        )

    def checkpoint_path(self, *parts: str) -> str:
        """A location under `storage_path` (without scheme for S3, as Ray expects with a
        filesystem given)."""
        root = self.storage_path.rstrip("/")
        if urlparse(root).scheme == "s3":
            root = root.removeprefix("s3://")
        return "/".join([root, *parts])


@contextlib.contextmanager
def ray_session(address: str | None, num_cpus: int | None = None) -> Iterator[Mapping[str, float]]:
    """Connect to the cluster at `address` (or start Ray on this machine with `num_cpus`)
    unless this process is connected already; yields the cluster's resources.

    A local instance started here is shut down afterwards, so no Ray process outlives the
    work; a connection to an existing cluster is only closed.
    """
    already_connected = ray.is_initialized()
    if not already_connected:
        if not address:
            os.environ.update(LOCAL_RAY_ENV)
        ray.init(
            # "local" starts a new instance even when `ray start` runs one on this machine
            # (such as the endpoint's head), which a bare ray.init() would join.
            address=address or "local",
            num_cpus=None if address else num_cpus,
            include_dashboard=False,
            log_to_driver=False,
            configure_logging=False,
        )
    try:
        yield ray.cluster_resources()
    finally:
        if not already_connected:
            ray.shutdown()
