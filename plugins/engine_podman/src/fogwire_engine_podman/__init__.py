"""fogwire's Podman engine plugin: :class:`fogwire_engine_podman.engine.PodmanEngine`.

The package root stays light; the podman SDK is imported only when the engine
is built (see :mod:`fogwire_engine_podman.plugin`).
"""
