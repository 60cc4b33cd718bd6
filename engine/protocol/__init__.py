"""SignalR hub protocol, sans-IO: bytes in, messages out; messages in, bytes out.

Nothing here imports trio or performs I/O.
"""
