"""The microservice catalogs ioFog controllers start with, so ``catalogId: N`` in a file means what it means there.

A controller seeds its catalog on first start, and documents written for it refer
to those items by id (seed 002's debugger uses ``catalogId: 4``). A node that works
from files picks the family of its operator's controller with the agent config's
``catalogFamily``:

``iofog`` (default)
    current Eclipse ioFog controllers: Router, RESTBlue, HAL, Debug, NATs
    (``ghcr.io/eclipse-iofog/...``), as ``iofogctl get catalog`` lists them.
``iofog-3.0``
    Eclipse ioFog v3.0.x controllers' seventeen items (``iofog/...`` on Docker Hub).
``datasance``
    Datasance PoT controllers: Router, RESTBlue, HAL, Debug, NATs (``ghcr.io/datasance/...``).
``none``
    no built-in items: only the CatalogItem documents given.

A CatalogItem document with the same id replaces the built-in item.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Literal

from fogwire.convert import PositiveInt
from fogwire.model.iofog import CatalogItemSpec

CatalogFamily = Literal["iofog", "iofog-3.0", "datasance", "none"]
"""The names ``catalogFamily`` takes."""


def _item(item_id: int, name: str, category: str, x86: str, arm: str, description: str = "") -> CatalogItemSpec:
    return CatalogItemSpec(
        id=PositiveInt(item_id), name=name, category=category, description=description, x86=x86, arm=arm
    )


def _five(prefix: str, router: str, vendor: str) -> dict[int, CatalogItemSpec]:
    return {
        1: _item(1, "Router", "SYSTEM", f"{prefix}/router:{router}", f"{prefix}/router:{router}", f"The built-in router for {vendor}."),
        2: _item(2, "RESTBlue", "SYSTEM", f"{prefix}/restblue:latest", f"{prefix}/restblue:latest", "REST API for Bluetooth Low Energy layer."),
        3: _item(3, "HAL", "SYSTEM", f"{prefix}/hal:latest", f"{prefix}/hal:latest", "REST API for Hardware Abstraction layer."),
        4: _item(4, "Debug", "SYSTEM", f"{prefix}/node-debugger:latest", f"{prefix}/node-debugger:latest", "The built-in debugger."),
        5: _item(5, "NATs", "SYSTEM", f"{prefix}/nats:latest", f"{prefix}/nats:latest", "NATs server microservice."),
    }  # fmt: skip


_IOFOG_3_0 = [
    (1, "Networking Tool", "SYSTEM", "iofog/core-networking", "iofog/core-networking-arm"),
    (2, "RESTBlue", "SYSTEM", "iofog/restblue", "iofog/restblue-arm"),
    (3, "HAL", "SYSTEM", "iofog/hal", "iofog/hal-arm"),
    (4, "Diagnostics", "UTILITIES", "iofog/diagnostics", "iofog/diagnostics-arm"),
    (5, "Hello Web Demo", "UTILITIES", "iofog/hello-web", "iofog/hello-web-arm"),
    (6, "Open Weather Map Data", "SENSORS", "iofog/open-weather-map", "iofog/open-weather-map-arm"),
    (7, "JSON REST API", "UTILITIES", "iofog/json-rest-api", "iofog/json-rest-api-arm"),
    (8, "Temperature Converter", "UTILITIES", "iofog/temperature-conversion", "iofog/temperature-conversion-arm"),
    (9, "JSON Sub-Select", "UTILITIES", "iofog/json-subselect", "iofog/json-subselect-arm"),
    (10, "Humidity Sensor Simulator", "SIMULATOR", "iofog/humidity-sensor-simulator", "iofog/humidity-sensor-simulator-arm"),
    (11, "Seismic Sensor Simulator", "SIMULATOR", "iofog/seismic-sensor-simulator", "iofog/seismic-sensor-simulator-arm"),
    (12, "Temperature Sensor Simulator", "SIMULATOR", "iofog/temperature-sensor-simulator", "iofog/temperature-sensor-simulator-arm"),
    (13, "Common Logging", "UTILITIES", "iofog/common-logging", "iofog/common-logging-arm"),
    (14, "JSON Generator", "UTILITIES", "iofog/json-generator", "iofog/json-generator-arm"),
    (15, "Router", "SYSTEM", "iofog/router:latest", "iofog/router:latest"),
    (16, "Proxy", "SYSTEM", "iofog/proxy:latest", "iofog/proxy-arm:latest"),
    (17, "PortRouter", "SYSTEM", "iofog/port-router:latest", "iofog/port-router:latest"),
]  # fmt: skip

CATALOGS: Mapping[str, Mapping[int, CatalogItemSpec]] = {
    "iofog": _five("ghcr.io/eclipse-iofog", "3.7.0", "Eclipse ioFog"),
    "iofog-3.0": {row[0]: _item(*row) for row in _IOFOG_3_0},
    "datasance": _five("ghcr.io/datasance", "latest", "Datasance PoT"),
    "none": {},
}
"""Each family's built-in catalog, by item id (sources: controller-agent-api.md §9, upstream-systems.md §3.1)."""
