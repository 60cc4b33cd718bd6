"""Benchmark servers: each prints ``READY <port>`` and serves until killed."""
