"""The demo web pages (templates and static bundle stay at the package root)."""
