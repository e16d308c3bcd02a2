"""The local webhook behind ``json://127.0.0.1:PORT/…`` channels: the code lives in
``bench.webhook`` (``scgw bench`` times notifications with it); this module keeps the
tests' imports working."""

from bench.webhook import Receiver, Request, running_receiver

__all__ = ["Receiver", "Request", "running_receiver"]
