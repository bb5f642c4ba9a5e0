"""Entry-point module that fails on import: it needs an SDK that is not installed."""

from __future__ import annotations

import fogwire_testplugin_missing_sdk  # type: ignore[import-not-found]  # noqa: F401 - fails on purpose
