"""A third-party fogwire plugin that fails on import; used only by fogwire's tests."""
