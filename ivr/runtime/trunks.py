"""Keeping ``ivr serve`` registered with the trunks that ask for it (``register = true``).

The asyncio side of :class:`~ivr.sip.trunk.TrunkRegistration`: one per such
trunk, each with its own Call-ID, its REGISTERs sent through the shared user
agent (:meth:`~ivr.sip.ua.UserAgent.send_request`), answers routed back by
Call-ID (``Services.legs``), and one loop timer for the next REGISTER.
Outcomes are logged as server events (``trunk_registered``,
``trunk_register_failed``) so an operator sees a carrier that refuses us.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from ivr.sip.events import RequestResult
from ivr.sip.trunk import RegisterRequest, TrunkRegistration


class TrunkRegistrations:
    """All registering trunks of one server process."""

    def __init__(self, services: Any) -> None:
        self.services = services
        self.loop = asyncio.get_running_loop()
        self.regs: list[TrunkRegistration] = []
        self._timers: dict[str, asyncio.TimerHandle] = {}
        ua = services.ua
        for trunk in services.trunks.trunks:
            if not trunk.register:
                continue
            user = trunk.username or trunk.caller_id or "ivr"
            contact = ua.contact(trunk.transport, user)  # transport=tcp and IPv6 brackets as the UA writes them
            call_id = f"{secrets.token_hex(10)}@{services.contact_host}"
            self.regs.append(TrunkRegistration(trunk, contact, call_id, auth=services.trunks.auth(trunk)))

    def start(self) -> None:
        for reg in self.regs:
            self.services.legs[reg.call_id] = lambda event, reg=reg: self._on_event(reg, event)
            self._send(reg)

    def stop(self) -> None:
        """ivr is stopping: remove our bindings (Expires 0) and stop refreshing them."""
        for handle in self._timers.values():
            handle.cancel()
        self._timers.clear()
        for reg in self.regs:
            self.services.legs.pop(reg.call_id, None)
            request = reg.unregister(self.loop.time())
            if request is not None:
                self._transmit(reg, request)
        self.services.flush()

    def _send(self, reg: TrunkRegistration) -> None:
        self._timers.pop(reg.call_id, None)
        self._transmit(reg, reg.request(self.loop.time()))
        self.services.flush()

    def _transmit(self, reg: TrunkRegistration, request: RegisterRequest) -> None:
        self.services.ua.send_request("REGISTER", request.uri, request.headers, self.services.sip_now(),
                                      destination=(reg.trunk.host, reg.trunk.port), transport=reg.trunk.transport)

    def _on_event(self, reg: TrunkRegistration, event: object) -> bool:
        if not isinstance(event, RequestResult):
            return False
        headers = event.response.headers.items() if event.response is not None else []
        outcome = reg.response(event.status, headers, self.loop.time())
        log = self.services.calllog
        if outcome == "registered":
            log.server("trunk_registered", f"registered with trunk {reg.trunk.name}", trunk=reg.trunk.name,
                       expires=round((reg.registered_until or 0) - self.loop.time()))
        elif outcome == "failed":
            log.server("trunk_register_failed", f"trunk {reg.trunk.name} refused our REGISTER: {event.status}",
                       trunk=reg.trunk.name, status=event.status)
        self._arm(reg)
        return True

    def _arm(self, reg: TrunkRegistration) -> None:
        if reg.next_at is None:
            return
        delay = max(0.0, reg.next_at - self.loop.time())
        self._timers[reg.call_id] = self.loop.call_later(delay, self._send, reg)
