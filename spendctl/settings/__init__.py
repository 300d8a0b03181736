"""Settings modules: base (default, everything from the environment) and test."""
