"""fogwire's containerd engine plugin: containerd's gRPC API driven directly, external or embedded."""
