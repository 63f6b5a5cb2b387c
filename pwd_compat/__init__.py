"""Play with Docker compatibility: PWD's HTTP routes and websocket onto the native services."""
