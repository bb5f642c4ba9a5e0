"""fogwire-config-controller: a fogwire node managed by an ioFog / Datasance PoT Controller.

The ``controller`` config source provisions nothing by itself: ``fogwire provision
KEY`` stores the node's credentials, and the source then polls the controller for
changes, turns its microservices into the agent's desired state and reports the
node's status. See ``docs/controller.md``.
"""
