"""Names the containerd engine writes into containerd: its runtime, its own labels, valid ids."""

from __future__ import annotations

import re

RUNTIME = "io.containerd.runc.v2"
"""The runc shim every workload runs under (spread over shim groups, see ``_containers``)."""
RUNC_OPTIONS_TYPE_URL = "containerd.runc.v1.Options"
SHIM_GROUP_ANNOTATION = "io.containerd.runc.v2.group"
"""The OCI annotation that puts a task under its group's shared runc shim."""
INTERNAL = "io.fogwire.containerd/"
"""Prefix of the labels the plugin keeps for itself (not reported as workload labels)."""
L_IMAGE_REF = INTERNAL + "image"
L_IMAGE_ID = INTERNAL + "image-id"
L_RESTART = INTERNAL + "restart"
L_PORTS = INTERNAL + "ports"
L_NETWORK = INTERNAL + "network"
L_HEALTH = INTERNAL + "health"
L_RUNTIME = INTERNAL + "runtime-binary"
"""The runc-compatible binary of a workload whose spec names an OCI runtime (the shim's ``BinaryName``)."""
L_LOG_KIB = INTERNAL + "log-file-kib"
"""Size of each of the workload's two log files, when its spec bounds its log."""
ID_RE = re.compile(r"^[A-Za-z0-9]+(?:[._-][A-Za-z0-9]+)*$")
"""A valid containerd id (and workload name)."""
