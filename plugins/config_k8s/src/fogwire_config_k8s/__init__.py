"""fogwire config source ``kubernetes``: the skrouterd JSON config mounted at ``QDROUTERD_CONF``.

The entry-point module is :mod:`fogwire_config_k8s.plugin`; the source
(:class:`fogwire_config_k8s.source.MountedFileSource`) is loaded only when selected.
"""
