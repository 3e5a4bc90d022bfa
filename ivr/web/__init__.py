"""The browser console, the JSON API (``/api/v1/``), live call events and ``/metrics``.

An aiohttp application in a process of its own, ``python -m ivr.web``, which ``ivr serve``
starts beside itself when the deployment file's ``[http] listen`` is set
(:mod:`ivr.runtime.companion`).  It sits above the runtime and below the CLI: it reads and
writes the journal, voicemail, switches and follow-me numbers through the runtime's own
storage code, and asks the server for what only the server has (its calls, registrations,
reloads, counters) over the control socket (:mod:`~ivr.web.link`, :mod:`ivr.runtime.control`).

Modules: :mod:`~ivr.web.users` (accounts, argon2 password hashes, API tokens),
:mod:`~ivr.web.sessions` (cookies, CSRF, login throttling), :mod:`~ivr.web.routes` (the route
table the OpenAPI document is built from, JSON errors), :mod:`~ivr.web.api` (the endpoints),
:mod:`~ivr.web.metrics`, :mod:`~ivr.web.events`, :mod:`~ivr.web.state` (the process's state), :mod:`~ivr.web.pages` (the console's pages
and their UI strings in English and German).
"""
