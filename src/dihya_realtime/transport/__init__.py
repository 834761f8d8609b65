"""Adaptations of python-socketio, engine.io and gevent-websocket: session, packet, inbound
and HTTP guards, the WebSocket driver, CORS for long-polling."""
