"""The browser console, the JSON API (``/api/v1/``), live call events and ``/metrics``.

An aiohttp application served by ``ivr serve`` on its own event loop when the deployment file's
``[http] listen`` is set (:class:`~ivr.web.app.WebConsole`, a companion of
:class:`ivr.runtime.server.Server`).  It sits above the runtime and below the CLI: it reads the
server's calls, journal, voicemail store, registrar and switches, and changes them only through
the runtime's own functions (the switches module ``ivr switch`` uses, the reloader SIGHUP uses).

Modules: :mod:`~ivr.web.users` (accounts, argon2 password hashes, API tokens),
:mod:`~ivr.web.sessions` (cookies, CSRF, login throttling), :mod:`~ivr.web.routes` (the route
table the OpenAPI document is built from, JSON errors), :mod:`~ivr.web.api` (the endpoints),
:mod:`~ivr.web.metrics`, :mod:`~ivr.web.events`, :mod:`~ivr.web.pages` (the console's pages
and their UI strings in English and German).
"""
