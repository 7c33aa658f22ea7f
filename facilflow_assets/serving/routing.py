"""Canary routing: which version answers a request, decided by its request id alone.

The id is hashed to a point in [0, 1); points below the challenger's share go to the
challenger. The same id always lands on the same version, and over many ids the share
observed converges on the configured one.
"""

import hashlib

PRODUCTION_ROLE = "production"
CHALLENGER_ROLE = "challenger"


def route_point(request_id: str) -> float:
    digest = hashlib.blake2b(request_id.encode(), digest_size=8).digest()
    return int.from_bytes(digest, "big") / 2**64


def route(request_id: str, challenger_share: float) -> str:
    """The role that serves `request_id`: production, or the challenger for its share."""
    if challenger_share > 0 and route_point(request_id) < challenger_share:
        return CHALLENGER_ROLE
    return PRODUCTION_ROLE
