"""Offline image bundles: carry container images to nodes that never see a registry.

``fogwire bundle create`` writes an OCI image layout of one or more images (each
blob once) plus ``fogwire-bundle.json`` into a tar, a zstd tar or a squashfs image;
``fogwire bundle import`` verifies every blob and loads the images into an engine
or pushes them to a registry; :class:`~fogwire_bundle.watch.BundleWatcher` imports
whatever is dropped into a directory. Koffer bundles (a registry storage tree in a
tar) are read too. The modules:

* :mod:`~fogwire_bundle.oci`: media types, digests, references, platforms;
* :mod:`~fogwire_bundle.registry`: a streaming registry v2 client;
* :mod:`~fogwire_bundle.layout` and :mod:`~fogwire_bundle.archive`: the bundle's form;
* :mod:`~fogwire_bundle.create`, :mod:`~fogwire_bundle.reader`,
  :mod:`~fogwire_bundle.importer`, :mod:`~fogwire_bundle.watch`: the operations.
"""

from fogwire_bundle.errors import BundleError

__all__ = ["BundleError"]
