"""Free TCP ports on 127.0.0.1: the code lives in ``bench.services.ports`` (``scgw bench``
starts the same servers); this module keeps the tests' imports working."""

from bench.services.ports import HOST, free_port

__all__ = ["HOST", "free_port"]
