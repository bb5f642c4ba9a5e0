"""The agent API: the HTTP server, its routes and envelope, metrics, and the CLI's client.

The daemon serves it on a unix socket (the CLI's channel); the device-API plugin
serves the same routes over HTTPS on port 54321 and adds the workloads' own.
"""
