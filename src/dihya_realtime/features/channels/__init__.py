"""Channels: subscribe, publish, history, presence, catch-up."""
