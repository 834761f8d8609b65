"""Collaborative documents (Yjs), their state kept in worker processes."""
