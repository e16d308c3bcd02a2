"""The tests' private PostgreSQL server: the code lives in ``bench.services.postgres``
(``scgw bench`` starts the same server); this module keeps the tests' imports working."""

from bench.services.postgres import (
    DEFAULT_SETTINGS,
    SUPERUSER,
    PostgresBinaries,
    PostgresServer,
    find_postgres_binaries,
    remove_template_clusters,
)

__all__ = [
    "DEFAULT_SETTINGS",
    "SUPERUSER",
    "PostgresBinaries",
    "PostgresServer",
    "find_postgres_binaries",
    "remove_template_clusters",
]
