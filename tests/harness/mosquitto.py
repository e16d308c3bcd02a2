"""The tests' private mosquitto broker: the code lives in ``bench.services.mosquitto``
(``scgw bench`` starts the same broker from the shipped config); this module keeps the tests'
imports working."""

from bench.services.mosquitto import (
    BROKER_USER,
    REPO_ROOT,
    SHIPPED_CONFIG,
    MosquittoServer,
    find_mosquitto,
    global_options,
)

__all__ = [
    "BROKER_USER",
    "REPO_ROOT",
    "SHIPPED_CONFIG",
    "MosquittoServer",
    "find_mosquitto",
    "global_options",
]
