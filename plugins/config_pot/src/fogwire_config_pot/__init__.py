"""fogwire config source ``pot`` (alias ``iofog``): the ioFog/PoT local API.

The entry-point module is :mod:`fogwire_config_pot.plugin`; the source itself
(:class:`fogwire_config_pot.source.LocalApiSource`) imports ``aiohttp`` and is
loaded only when selected.
"""
