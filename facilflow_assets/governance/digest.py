"""The digest of a model's files: what an approval binds to and every loader verifies.

A version's digest is taken once, from the files its evaluation scored, and kept in the
reserved version tag `facilflow.model_digest` and in the audit trail; whoever loads the
version later takes the digest of what it downloaded and refuses a mismatch.
"""

import hashlib
import tempfile
from pathlib import Path

import mlflow.artifacts
from mlflow.tracking import MlflowClient

DIGEST_TAG = "facilflow.model_digest"
# Written by MLflow's client into what it downloads from a models:/ URI, not stored content.
DOWNLOAD_METADATA = {"registered_model_meta"}
_CHUNK = 1 << 20


def directory_digest(directory: Path) -> str:
    """sha256 over every file's relative path and content, in path order."""
    total = hashlib.sha256()
    files = sorted(
        p for p in directory.rglob("*") if p.is_file() and p.name not in DOWNLOAD_METADATA
    )
    if not files:
        raise FileNotFoundError(f"{directory} holds no files to take a digest of")
    for path in files:
        content = hashlib.sha256()
        with path.open("rb") as handle:
            while chunk := handle.read(_CHUNK):
                content.update(chunk)
        total.update(f"{path.relative_to(directory).as_posix()}\0{content.hexdigest()}\n".encode())
    return f"sha256:{total.hexdigest()}"


def version_digest(client: MlflowClient, name: str, version: str) -> str:
    """The digest of a registered version's files as its store serves them now."""
    with tempfile.TemporaryDirectory() as scratch:
        files = mlflow.artifacts.download_artifacts(
            artifact_uri=client.get_model_version_download_uri(name, version),
            dst_path=scratch,
            tracking_uri=client.tracking_uri,
        )
        return directory_digest(Path(files))
