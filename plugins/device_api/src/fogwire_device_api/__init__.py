"""fogwire device API: what microservices and tools on the device talk to (port 54321).

The agent service ``device-api`` serves the agent API over HTTPS on 127.0.0.1 and
on the workloads' bridge address, gives every workload an identity (a service
account token projected as files, the legacy ``SELFNAME`` variables and the
``iofog`` / ``edgelet.default.svc.bridge.local`` hosts), and answers the
microservice routes of both generations (EdgeletAPI v1 and the Java agent's v2),
with their control websockets.
"""
