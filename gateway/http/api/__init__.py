"""The duty-desk HTTP API, ``/api/v1`` (see ``gateway/http/site.py`` for how it is mounted)."""
