"""fogwire-sink-skrouter: the ``skrouter`` reload sink (skupper-router over AMQP management)."""
