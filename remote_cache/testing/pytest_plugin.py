"""pytest fixtures for remote_cache (registered through the ``pytest11`` entry point)."""
