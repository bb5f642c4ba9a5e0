"""Reading, validating and writing the agent config file."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import attrs
import cattrs
import yaml

from fogwire.convert import make_converter, require_mapping, structure, to_camel
from fogwire.errors import ConfigError, Problem
from fogwire.model.agent_config import (
    ENGINE_ALIASES,
    KNOWN_ENGINES_BY_OS,
    NO_EFFECT_KEYS,
    PROFILE_ALIASES,
    AgentConfig,
    PluginSelection,
    Profile,
    default_engine,
)


def check_agent_config(config: AgentConfig, origin: str, index: int = 1, platform: str = sys.platform) -> AgentConfig:
    """Validate cross-field rules; return the config with engine names normalised.

    ``edgelet`` becomes ``containerd``; an unset engine becomes the OS default;
    a fogwire engine that can't run on this OS is an error.
    """
    problems: list[Problem] = []
    if config.current_profile not in config.profiles:
        names = ", ".join(sorted(config.profiles)) or "none"
        problems.append(
            Problem(origin, index, "currentProfile", f"no profile named {config.current_profile!r} (profiles: {names})")
        )
    os_key = next((k for k in KNOWN_ENGINES_BY_OS if platform.startswith(k)), "linux")
    every_known = {name for names in KNOWN_ENGINES_BY_OS.values() for name in names}
    profiles = {}
    for name, profile in config.profiles.items():
        engine = profile.container_engine or default_engine(platform)
        engine = ENGINE_ALIASES.get(engine, engine)
        if engine in every_known and engine not in KNOWN_ENGINES_BY_OS[os_key]:
            allowed = ", ".join(KNOWN_ENGINES_BY_OS[os_key])
            problems.append(
                Problem(
                    origin,
                    index,
                    f"profiles.{name}.containerEngine",
                    f"engine {engine!r} does not run on {os_key}; expected one of {allowed}",
                )
            )
        if profile.arch not in ("auto", "amd64", "arm64", "arm", "riscv64"):
            problems.append(
                Problem(
                    origin,
                    index,
                    f"profiles.{name}.arch",
                    f"expected auto, amd64, arm64, arm or riscv64, got {profile.arch!r}",
                )
            )
        profiles[name] = attrs.evolve(profile, container_engine=engine)
    if problems:
        raise ConfigError(problems)
    return attrs.evolve(config, profiles=profiles)


def _with_canonical_keys(mapping: Any, origin: str) -> Any:
    """Each profile's keys under their fogwire names (edgelet's flags and the Java agent's settings renamed)."""
    profiles = mapping.get("profiles") if isinstance(mapping, dict) else None
    if not isinstance(profiles, dict):
        return mapping
    problems: list[Problem] = []
    renamed: dict[str, Any] = {}
    for name, profile in profiles.items():
        if not isinstance(profile, dict):
            renamed[name] = profile
            continue
        keys: dict[str, Any] = {}
        for key, value in profile.items():
            canonical = PROFILE_ALIASES.get(key, key)
            if canonical in keys:
                problems.append(
                    Problem(
                        origin, 1, f"profiles.{name}.{key}", f"{key} and {canonical} name the same setting; keep one"
                    )
                )
            keys[canonical] = value
        renamed[name] = keys
    if problems:
        raise ConfigError(problems)
    return {**mapping, "profiles": renamed}


def keys_without_effect(profile: Profile) -> list[str]:
    """The keys ``profile`` sets that change nothing on a fogwire node (reported once at start)."""
    defaults = Profile()
    fields = {to_camel(a.name): a.name for a in attrs.fields(Profile)}
    return [key for key in NO_EFFECT_KEYS if getattr(profile, fields[key]) != getattr(defaults, fields[key])]


def parse_agent_config(
    data: Any, origin: str, converter: cattrs.Converter | None = None, platform: str = sys.platform
) -> AgentConfig:
    """Structure and check raw config data (``None`` or empty means all defaults)."""
    converter = converter or make_converter()
    if data is None:
        data = {}
    mapping = _with_canonical_keys(require_mapping(data, origin, 1, ""), origin)
    config = structure(converter, mapping, AgentConfig, origin, 1)
    return check_agent_config(config, origin, 1, platform)


def load_agent_config(path: Path, converter: cattrs.Converter | None = None) -> AgentConfig:
    """Read the config file; a missing file means all defaults."""
    if not path.exists():
        return parse_agent_config(None, str(path), converter)
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as error:
        raise ConfigError([Problem(str(path), 1, "", f"not valid YAML: {error}")]) from error
    return parse_agent_config(data, str(path), converter)


def default_services() -> list[str]:
    """The agent services a new config selects: ``device-api`` when its distribution is installed."""
    from importlib.metadata import PackageNotFoundError, distribution

    try:
        distribution("fogwire-device-api")
    except PackageNotFoundError:
        return []
    return ["device-api"]


def default_config(desired_state_file: Path) -> AgentConfig:
    """The config ``fogwire init-config`` writes: one ``default`` profile, the ``file`` source.

    With ``fogwire-device-api`` installed, its ``device-api`` service is selected too:
    an ioFog node serves its microservices' config on port 54321 from the start.
    """
    profile = Profile(
        container_engine=default_engine(),
        config_source=PluginSelection("file", {"path": str(desired_state_file)}),
        services=tuple(PluginSelection(name) for name in default_services()),
    )
    return AgentConfig("default", {"default": profile})


def dump_agent_config(config: AgentConfig, converter: cattrs.Converter | None = None) -> str:
    """The config as YAML text."""
    converter = converter or make_converter()
    return yaml.safe_dump(converter.unstructure(config), sort_keys=False)
