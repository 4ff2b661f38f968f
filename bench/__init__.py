"""The benchmark of contact-gateway: `uv run python -m bench` (see bench/README.md). Never part of the tests."""
