"""The only I/O in the engine: ASGI (hypercorn), trio-websocket, in-memory."""
