"""fogwire's dev-only test and benchmark harness (not published).

- :mod:`harness.services`: the registry, dockerd, podman and containerd that
  tests and benchmarks run against, started idempotently under
  ``$FOGWIRE_HARNESS_DIR``.
- :mod:`harness.images`: busybox test images built by code and pushed to the
  harness registry.
- :mod:`harness.fixtures`: pytest fixtures over both, loaded for every test run.
"""
