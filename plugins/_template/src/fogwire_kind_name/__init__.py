"""fogwire engine plugin ``name`` (template: rename before use)."""
