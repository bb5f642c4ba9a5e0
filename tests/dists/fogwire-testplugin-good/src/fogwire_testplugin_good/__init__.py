"""A third-party fogwire plugin used only by fogwire's tests."""
