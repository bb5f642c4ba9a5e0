"""Every workload's log is bounded: its microservice's ``logSize``, else the agent's ``workloadLogSize``."""

from __future__ import annotations

from typing import Any

from fogwire.convert import make_converter
from fogwire.model.agent_config import Profile
from fogwire.model.desired import DesiredState, assemble
from fogwire.resolve import resolve


def state(**container: Any) -> DesiredState:
    app = {
        "apiVersion": "iofog.org/v3",
        "kind": "Application",
        "metadata": {"name": "app"},
        "spec": {
            "microservices": [{"name": "web", "images": {"x86": "img:1", "arm": "img:1"}, "container": container}]
        },
    }
    return assemble(make_converter(), [app], "app.yaml")


def test_a_microservice_without_log_size_gets_the_agents_default() -> None:
    desired = state()
    resolved = resolve(desired.microservices["web"], desired, "amd64", default_log_mib=10)
    assert resolved.spec.log_max_mib == 10


def test_log_size_of_the_microservice_wins_over_the_default() -> None:
    desired = state(logSize=2)
    assert resolve(desired.microservices["web"], desired, "amd64", default_log_mib=10).spec.log_max_mib == 2


def test_a_changed_default_is_a_changed_spec() -> None:
    desired = state()
    ms = desired.microservices["web"]
    ten = resolve(ms, desired, "amd64", default_log_mib=10)
    twenty = resolve(ms, desired, "amd64", default_log_mib=20)
    assert ten.config_hash != twenty.config_hash


def test_the_agent_default_is_ten_mib_and_a_known_key() -> None:
    profile = make_converter().structure({"workloadLogSize": 3}, Profile)
    assert (Profile().workload_log_size, profile.workload_log_size) == (10, 3)
