"""Private PostgreSQL and mosquitto servers on free 127.0.0.1 ports in temporary folders, for
``scgw bench`` and the test suite (``tests/harness`` re-exports these modules)."""

from .mosquitto import MosquittoServer
from .ports import free_port
from .postgres import PostgresServer
from .process import ServiceError

__all__ = ["MosquittoServer", "PostgresServer", "ServiceError", "free_port"]
