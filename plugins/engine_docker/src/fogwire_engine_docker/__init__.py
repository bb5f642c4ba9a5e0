"""fogwire's Docker engine plugin: :class:`fogwire_engine_docker.engine.DockerEngine`.

The package root stays light; the docker SDK is imported only when the engine
is built (see :mod:`fogwire_engine_docker.plugin`).
"""
