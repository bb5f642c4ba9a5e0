"""Pull errors are classified by what the registry said, not by digits in the image name."""

from __future__ import annotations

import pytest
from fogwire_engine_docker.engine import pull_error as docker_pull_error
from fogwire_engine_podman.engine import pull_error as podman_pull_error

from fogwire.engine import RegistryAuth
from fogwire.errors import ImageNotFoundError, RegistryAuthError

REFERENCE = "127.0.0.1:5001/fogwire/missing-401744f4:1"
AUTH = RegistryAuth("127.0.0.1:5001", "fogwire", "s3cret", insecure=True)


@pytest.mark.parametrize("pull_error", [docker_pull_error, podman_pull_error], ids=["docker", "podman"])
def test_manifest_unknown_for_a_name_containing_401_is_not_found(pull_error: object) -> None:
    message = (
        f"initializing source docker://{REFERENCE}: reading manifest 1 in "
        "127.0.0.1:5001/fogwire/missing-401744f4: manifest unknown: manifest unknown"
    )
    assert isinstance(pull_error(message, REFERENCE, AUTH), ImageNotFoundError)  # type: ignore[operator]


@pytest.mark.parametrize("pull_error", [docker_pull_error, podman_pull_error], ids=["docker", "podman"])
def test_a_401_status_is_an_auth_error(pull_error: object) -> None:
    error = pull_error("received unexpected HTTP status: 401 Unauthorized", REFERENCE, AUTH)  # type: ignore[operator]
    assert isinstance(error, RegistryAuthError)
    assert "s3cret" not in str(error)
