"""Helpers shared by the CLI commands: paths, logging, JSON output."""

from __future__ import annotations

import argparse
import json
import logging
import os
import sys
import time
from typing import Any

from fogwire.paths import Paths, default_paths, with_overrides


def paths_from(args: argparse.Namespace) -> Paths:
    """The effective paths: flags over environment over defaults."""
    return with_overrides(
        default_paths(),
        config_file=getattr(args, "config_file", None),
        state_dir=getattr(args, "state_dir", None),
        log_dir=getattr(args, "log_dir", None),
        run_dir=getattr(args, "run_dir", None),
    )


class JsonFormatter(logging.Formatter):
    """One JSON object per log line: time, level, logger, message, and any extras."""

    _standard = set(vars(logging.makeLogRecord({})))

    def format(self, record: logging.LogRecord) -> str:
        """Render ``record`` as a JSON line."""
        entry: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created)) + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key, value in vars(record).items():
            if key not in self._standard and not key.startswith("_"):
                entry[key] = value
        if record.exc_info:
            entry["exception"] = self.formatException(record.exc_info)
        return json.dumps(entry, default=str)


def setup_logging(args: argparse.Namespace) -> None:
    """Log to stderr as text or JSON (``--log-format`` / ``FOGWIRE_LOG_FORMAT``)."""
    fmt = getattr(args, "log_format", None) or os.environ.get("FOGWIRE_LOG_FORMAT", "text")
    level = (getattr(args, "log_level", None) or os.environ.get("FOGWIRE_LOG_LEVEL", "info")).upper()
    handler = logging.StreamHandler(sys.stderr)
    if fmt == "json":
        handler.setFormatter(JsonFormatter())
    else:
        handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(getattr(logging, level, logging.INFO))


def print_json(data: Any) -> None:
    """Print ``data`` as one JSON document on stdout."""
    print(json.dumps(data, indent=2, default=str))
