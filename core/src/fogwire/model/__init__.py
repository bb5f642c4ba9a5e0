"""The data model: frozen attrs values with no serialisation code.

* :mod:`fogwire.model.iofog`: the ioFog v3 documents (Application, Microservice,
  CatalogItem, Registry) as iofogctl / potctl write them.
* :mod:`fogwire.model.agent_config`: the agent config with its profiles.
* :mod:`fogwire.model.desired`: documents assembled into one desired state.

Attribute names are snake_case; the converter maps them to the documents'
camelCase keys (``host_network_mode`` ↔ ``hostNetworkMode``).
"""
