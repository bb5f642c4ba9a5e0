"""fogwire's dev-only test and benchmark harness (not published).

- :mod:`harness.services`: the registry, dockerd, podman and containerd that
  tests and benchmarks run against, started idempotently under
  ``$FOGWIRE_HARNESS_DIR``.
- :mod:`harness.images`: busybox test images built by code and pushed to the
  harness registry.
- :mod:`harness.fixtures`: pytest fixtures over both, loaded for every test run.
- :mod:`harness.agents`: running an agent in a test, the engine plugins of the
  harness engines, and ``AgentEnv``, the per-test agent set-up the e2e modules
  subclass.
- :mod:`harness.cli`: the ``fogwire`` command as a subprocess with a test's paths.
- :mod:`harness.netns`, :mod:`harness.proxy`, :mod:`harness.registry_fronts`,
  :mod:`harness.runtimes`: network namespaces that play other hosts, a real
  tinyproxy, a registry that redirects its blobs to "a CDN", a recording OCI runtime.
"""
