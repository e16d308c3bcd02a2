"""The gateway as a separate process: the code lives in ``bench.gateway_process``
(``scgw bench`` runs the gateway the same way); this module keeps the tests' imports working."""

from bench.gateway_process import GatewayProcess

__all__ = ["GatewayProcess"]
