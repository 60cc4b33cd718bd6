"""Hubs: the base class, method binding, clients, sessions and the server."""
