"""The agent's own limits (events on crossing) and its own rotated log files (``logDirectory``)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from fogwire.cli.agent_cmd import _log_to_files
from fogwire.config import keys_without_effect, parse_agent_config
from fogwire.limits import Limits, LimitWatch, own_rss_mib, tree_bytes
from fogwire.model.agent_config import Profile, profile_key


async def test_a_limit_crossed_is_recorded_once_and_its_clearing_too(tmp_path: Path) -> None:
    recorded: list[tuple[str, str]] = []

    async def record(kind: str, detail: str) -> None:
        recorded.append((kind, detail))

    watch = LimitWatch([tmp_path], record)
    limits = Limits(disk_gib=1.0, memory_mib=100.0, cpu_percent=50.0)
    await watch.check(limits, {"memory": 150.0, "cpu": 10.0, "disk": 0.1})
    await watch.check(limits, {"memory": 160.0, "cpu": 10.0, "disk": 0.1})
    await watch.check(limits, {"memory": 90.0, "cpu": 10.0, "disk": 0.1})
    assert recorded == [
        ("limit-exceeded", "memory: 150.0 MiB over the limit of 100 MiB"),
        ("limit-cleared", "memory: 90.0 MiB, under the limit of 100 MiB"),
    ]


def test_the_figures_are_measured(tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "a" / "blob").write_bytes(b"x" * 300_000)
    assert tree_bytes([tmp_path]) >= 300_000
    assert own_rss_mib() > 5
    figures = LimitWatch([tmp_path], record=None).measure(Limits(disk_gib=1.0))  # type: ignore[arg-type]
    assert figures["disk"] > 0 and figures["memory"] > 5 and figures["cpu"] >= 0


def test_the_daemons_own_log_is_rotated_within_its_limit(tmp_path: Path) -> None:
    class Agentish:
        profile = Profile(log_directory=str(tmp_path / "logs"), log_limit=0.0003, log_file_count=3)

    root = logging.getLogger()
    before = list(root.handlers)
    _log_to_files(Agentish())  # type: ignore[arg-type]
    try:
        handler = next(h for h in root.handlers if h not in before)
        logger = logging.getLogger("fogwire.test-rotation")
        logger.setLevel(logging.INFO)
        for n in range(4000):
            logger.info("line %d %s", n, "x" * 100)
        handler.flush()
    finally:
        for h in root.handlers:
            if h not in before:
                root.removeHandler(h)
                h.close()
    files = sorted(p.name for p in (tmp_path / "logs").iterdir())
    assert files == ["fogwire.log", "fogwire.log.1", "fogwire.log.2"]
    assert sum((tmp_path / "logs" / f).stat().st_size for f in files) <= 3 * 110_000


def test_operators_keys_are_known_under_every_name() -> None:
    data: dict[str, Any] = {
        "profiles": {
            "default": {
                "getChangesFreq": 60,
                "statusUpdateFreq": 30,
                "diskConsumptionLimit": 10,
                "memoryConsumptionLimit": 4096,
                "processorConsumptionLimit": 80,
                "logDiskDirectory": "/var/log/iofog-agent",
                "logFileCount": 10,
                "dockerUrl": "unix:///var/run/docker.sock",
                "gpsMode": "auto",
                "timeZone": "UTC",
                "secureMode": False,
            }
        }
    }
    profile = parse_agent_config(data, "config.yaml").profile
    assert (profile.change_frequency, profile.status_frequency) == (60, 30)
    assert (profile.disk_limit, profile.memory_limit, profile.cpu_limit) == (10, 4096, 80)
    assert profile.log_directory == "/var/log/iofog-agent"
    assert profile.container_engine_url == "unix:///var/run/docker.sock"
    assert keys_without_effect(profile) == ["gpsMode", "secureMode", "timeZone"]
    assert [profile_key(n) for n in ("--cf", "cf", "--change-frequency-seconds", "changeFrequency", "tz", "nope")] == [
        "changeFrequency",
        "changeFrequency",
        "changeFrequency",
        "changeFrequency",
        "timeZone",
        None,
    ]
