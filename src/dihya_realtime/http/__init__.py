"""The HTTP API blueprint and its OpenAPI document."""
