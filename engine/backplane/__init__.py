"""Scale-out: hubs shared by many processes through a message broker.

``RedisBackplane`` lives in ``triohub.backplane.redis`` (the ``triohub[redis]``
extra, coredis); this package imports no Redis client, so a server without a
backplane never loads one.
"""

from .hub import BackplaneUnavailable, HubNode, Link

__all__ = ["BackplaneUnavailable", "HubNode", "Link"]
