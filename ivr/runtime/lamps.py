"""The lamps on the phones: message waiting (RFC 3842), the busy lamp field (RFC 4235), presence (RFC 3856).

Phones SUBSCRIBE; this module decides who may watch what and keeps every
subscription of the process, sending NOTIFYs when what they watch changes.
The SIP side (parsing SUBSCRIBE, the subscription's dialog, NOTIFY, the bodies,
the SQLite store) is :mod:`ivr.sip.subscription`'s.

* Authentication: the registrar's digest check (401 with a challenge), as for
  REGISTER.  A throttled address gets 403.
* ``message-summary``: a user watches its own mailbox only (its extension's
  ``mailbox``, or its number), else 403.  A NOTIFY with the new/old counts
  goes out at once and whenever a message of that mailbox arrives, is listened
  to (saved) or deleted (the voicemail store reports every change).
* ``dialog`` and ``presence``: a user watches an extension of the deployment
  (a colleague's lamp; 404 for no such extension) that its ``watch`` patterns
  allow (every one without patterns; 403 otherwise).  Both packages draw one
  record, :meth:`Lamps.line`, the one account of an extension's state: its line
  (:class:`ivr.runtime.phones.Lines`: terminated, early = ringing or dialling,
  confirmed = talking), the call it is in (Call-ID, tags, the other party and
  the directed-pickup URI, from the user agent's dialog) and whether it can be
  reached (a registered or static contact: PIDF ``open``).  A line change
  notifies both packages' subscribers; a REGISTER that makes an extension
  reachable or not, and the expiry of its last registration, notify presence.
* Any other event package gets 489 with Allow-Events.  A refused SUBSCRIBE
  leaves nothing behind.
* Expiry (RFC 6665 section 4.2.2): a subscription lasts its granted Expires
  (``[registrar]`` min/max/default); a refresh extends it, Expires: 0 ends it
  with a final NOTIFY (``terminated``), and one not refreshed in time ends with
  ``terminated;reason=timeout``.  A NOTIFY answered 481 (or unanswered) ends it.
* Subscriptions survive a restart (``<data>/subscriptions.sqlite``): at start
  each one left gets a NOTIFY with the current state.
"""

from __future__ import annotations

import asyncio
import math
import re
from collections.abc import Callable

from ivr.runtime.services import Services
from ivr.sip.events import RequestReceived, RequestResult
from ivr.sip.registrar import RegisterReply
from ivr.sip.subscription import (
    Line,
    SubscribeError,
    Subscription,
    SubscriptionStore,
    dialog_info,
    message_summary,
    parse_subscribe,
    pidf,
)
from ivr.sip.trunk import pattern_allows
from ivr.sip.ua import UserAgent
from ivr.sip.uacore import Call

PACKAGES = ("message-summary", "dialog", "presence")
LINE_PACKAGES = ("dialog", "presence")
_EXPIRES = re.compile(r";\s*expires\s*=\s*(\d+)", re.IGNORECASE)


class Lamps:
    """Every subscription of one ``ivr serve`` process (see the module docstring)."""

    def __init__(self, services: Callable[[], Services], ua: UserAgent) -> None:
        self._services = services
        self.ua = ua
        self.subs: dict[str, Subscription] = {}
        self._timers: dict[str, asyncio.TimerHandle] = {}
        self.store: SubscriptionStore | None = None
        # extension -> until when (wall clock) it can be reached: its last registration's
        # expiry, infinity with static contacts (presence ``open``).
        self.reachable_until: dict[str, float] = {}
        self._reach_timers: dict[str, asyncio.TimerHandle] = {}
        self._told: dict[str, str] = {}  # extension -> the ringing phone's tag its dialog NOTIFYs carried

    @property
    def services(self) -> Services:
        return self._services()

    # ------------------------------------------------------------------ start and stop

    def start(self) -> None:
        """Open the store, take back the subscriptions a restart left, listen for changes."""
        services = self.services
        services.config.data.mkdir(parents=True, exist_ok=True)
        self.store = SubscriptionStore(services.config.data / "subscriptions.sqlite")
        self.store.clear_lines()
        services.lines.watchers.append(self.line_changed)
        services.lines.progress_watchers.append(self.ringing_progressed)
        wall = services.wall()
        for ext in services.config.extensions:  # once, at start; REGISTERs keep it current
            self._reach(ext.number, max((b.expires_at for b in services.registrar().contacts(ext.number, wall)),
                                        default=0.0))
        loop = asyncio.get_running_loop()
        if services.config.mailboxes:
            def changed(mailbox: str) -> None:  # on whichever thread changed the store
                loop.call_soon_threadsafe(self.mailbox_changed, mailbox)

            services.voicemail_store.listeners.append(changed)
        for sub in self.store.load(services.wall()):
            self._keep(sub)
            self._notify(sub)

    def stop(self) -> None:
        for timer in [*self._timers.values(), *self._reach_timers.values()]:
            timer.cancel()
        self._timers.clear()
        self._reach_timers.clear()
        if self.store is not None:
            self.store.close()

    # ------------------------------------------------------------------ SUBSCRIBE

    def subscribe(self, event: RequestReceived) -> None:
        services = self.services
        now, wall = services.sip_now(), services.wall()
        status, reason, headers, to_tag = self._answer(event, wall)
        self.ua.respond(event.handle, status, now, headers=headers, to_tag=to_tag)
        services.calllog.server("subscribe", f"SUBSCRIBE from {event.source[0]}:{event.source[1]}: {status} {reason}",
                                status=status, event_package=_package(event), resource=_resource(event))
        sub = self.subs.get(f"{event.request.call_id};{event.request.from_.tag or ''}")
        if 200 <= status < 300 and sub is not None:
            self._notify(sub)
        services.flush()

    def _answer(self, event: RequestReceived, wall: float) -> tuple[int, str, list[tuple[str, str]], str | None]:
        rc = self.services.config.registrar
        try:
            sub = parse_subscribe(event.request, PACKAGES, default_expires=rc.default_expires,
                                  min_expires=rc.min_expires, max_expires=rc.max_expires)
            user = self._authenticate(event, wall)
            existing = self.subs.get(sub.key)
            if sub.to_tag:
                if existing is None or existing.local_tag != sub.to_tag or existing.user != user:
                    raise SubscribeError(481, "Call/Transaction Does Not Exist")
                existing.refresh(sub, wall)
                return self._granted(existing, wall)
            self._authorize(sub.event, sub.resource, user)
            new = Subscription.accept(sub, user, event.source, event.transport, wall)
            return self._granted(new, wall)
        except SubscribeError as exc:
            return exc.status, exc.reason, exc.headers, None

    def _granted(self, sub: Subscription, wall: float) -> tuple[int, str, list[tuple[str, str]], str | None]:
        self._keep(sub)
        headers = [("Expires", str(sub.left(wall))), ("Contact", self._contact(sub.transport))]
        return 200, "OK", headers, sub.local_tag

    def _authenticate(self, event: RequestReceived, wall: float) -> str:
        request = event.request
        credentials = [*request.headers.get_all("Authorization"), *request.headers.get_all("Proxy-Authorization")]
        verdict = self.services.registrar().authenticate("SUBSCRIBE", request.uri, credentials, event.source, wall)
        if verdict.account is None:
            raise SubscribeError(403 if verdict.drop else verdict.status, verdict.reason, verdict.headers)
        return verdict.account.number

    def _authorize(self, package: str, resource: str, user: str) -> None:
        """Who may watch what: one's own mailbox; the lines its ``watch`` patterns allow."""
        config = self.services.config
        if package == "message-summary":
            own = config.extension(user)
            mailbox = (own.mailbox or own.number) if own is not None else ""
            if resource not in (mailbox, user):
                raise SubscribeError(403, f"Forbidden ({user} may not watch mailbox {resource})")
            if config.mailbox(mailbox) is None:
                raise SubscribeError(404, f"Not Found (no mailbox {mailbox})")
            return
        if config.extension(resource) is None:
            raise SubscribeError(404, f"Not Found (no extension {resource})")
        own = config.extension(user)
        patterns = own.watch if own is not None else ()
        if patterns and not any(pattern_allows(p, resource) for p in patterns):
            raise SubscribeError(403, f"Forbidden ({user} may not watch extension {resource})")

    # ------------------------------------------------------------------ keeping subscriptions

    def _keep(self, sub: Subscription) -> None:
        """Remember ``sub`` (in the store too) and arm its expiry; Expires 0 is ended after its NOTIFY."""
        self.subs[sub.key] = sub
        self.services.legs[sub.call_id] = lambda event: self._notify_answered(sub, event)
        timer = self._timers.pop(sub.key, None)
        if timer is not None:
            timer.cancel()
        delay = max(0.0, sub.expires_at - self.services.wall())
        self._timers[sub.key] = asyncio.get_running_loop().call_later(delay, self._expired, sub.key)
        assert self.store is not None
        self.store.save(sub)

    def _forget(self, sub: Subscription) -> None:
        self.subs.pop(sub.key, None)
        timer = self._timers.pop(sub.key, None)
        if timer is not None:
            timer.cancel()
        if self.store is not None:
            self.store.remove(sub.key)

    def _expired(self, key: str) -> None:
        self._timers.pop(key, None)
        sub = self.subs.get(key)
        if sub is not None:
            self._notify(sub, reason="timeout")

    def _notify_answered(self, sub: Subscription, event: object) -> bool:
        """The answer to one of our NOTIFYs: 481, 408 or another failure ends the subscription."""
        if not isinstance(event, RequestResult):
            return False
        cseq = event.response.cseq[0] if event.response is not None else 0
        self.services.calllog.server("notify_answered", f"NOTIFY {sub.event} for {sub.resource}: {event.status}",
                                     resource=sub.resource, event_package=sub.event, status=event.status, cseq=cseq)
        if event.status >= 300 and self.subs.get(sub.key) is sub:
            self.services.calllog.server("subscription_ended", f"NOTIFY refused ({event.status}): subscription ended",
                                         resource=sub.resource, event_package=sub.event, status=event.status)
            self._forget(sub)
        if sub.key not in self.subs:
            self.services.legs.pop(sub.call_id, None)
        return True

    # ------------------------------------------------------------------ NOTIFY

    def mailbox_changed(self, mailbox: str) -> None:
        for sub in [s for s in self.subs.values() if s.event == "message-summary"]:
            if self._mailbox_of(sub) == mailbox:
                self._notify(sub)

    def line_changed(self, extension: str, state: str) -> None:
        if self.store is not None:
            self.store.set_line(extension, state, self.services.wall())  # for `ivr phones`
        self._notify_line(extension, LINE_PACKAGES)

    def ringing_progressed(self, extension: str) -> None:
        """A ringing phone's first answer gave its tag: the dialog package's call details grew."""
        call = self._call(extension)
        if call is not None and call.early_tag and call.dialog is None and self._told.get(extension) != call.early_tag:
            self._told[extension] = call.early_tag
            self._notify_line(extension, ("dialog",))

    def _notify_line(self, extension: str, packages: tuple[str, ...]) -> None:
        for sub in [s for s in self.subs.values() if s.event in packages and s.resource == extension]:
            self._notify(sub)

    # ------------------------------------------------------------------ reachability (presence open/closed)

    def registered(self, aor: str, reply: RegisterReply) -> None:
        """A REGISTER was answered: a 200 lists every binding left with its expiry (RFC 3261
        section 10.3 step 8), so the extension's reachability follows without a lookup."""
        services = self.services
        account = services.registrar().account(aor) if reply.status == 200 else None
        if account is None:
            return
        left = [int(m.group(1)) for name, value in reply.headers if name.lower() == "contact"
                for m in [_EXPIRES.search(value)] if m]
        until = services.wall() + max(left) if left else 0.0
        was = self.reachable(account.number)
        self._reach(account.number, until)
        if self.reachable(account.number) != was:
            self._notify_line(account.number, ("presence",))

    def reachable(self, extension: str) -> bool:
        ext = self.services.config.extension(extension)
        static = ext is not None and bool(ext.contacts)
        return static or self.reachable_until.get(extension, 0.0) > self.services.wall()

    def _reach(self, extension: str, until: float) -> None:
        """Remember ``extension`` is reachable until ``until``; its expiry notifies presence."""
        self.reachable_until[extension] = until
        timer = self._reach_timers.pop(extension, None)
        if timer is not None:
            timer.cancel()
        if not math.isinf(until) and until > self.services.wall():
            delay = until - self.services.wall() + 0.5  # just past the registration's end
            self._reach_timers[extension] = asyncio.get_running_loop().call_later(
                delay, self._notify_line, extension, ("presence",))

    # ------------------------------------------------------------------ the one account of a line

    def line(self, extension: str) -> Line:
        """What ``extension``'s lamp shows, for the dialog and the presence package alike."""
        services = self.services
        host = services.contact_host
        entity = f"sip:{extension}@{host}"
        state = services.lines.state(extension)
        reachable = self.reachable(extension)
        call = self._call(extension)
        if call is None:
            return Line(entity, state, reachable)
        code = services.config.features.directed_pickup
        pickup = self.ua.contact(user=f"{code}{extension}").strip("<>") if code else ""  # with our port
        if call.role == "uac":  # ivr rings (or talks to) the extension's phone
            remote_tag = call.dialog.remote_tag if call.dialog is not None else call.early_tag
            return Line(entity, state, reachable, call.call_id, remote_tag, call.local_tag, "recipient",
                        str(call.invite.from_.uri), pickup)
        return Line(entity, state, reachable, call.call_id, call.invite.from_.tag or "", call.local_tag,
                    "initiator", str(call.invite.to.uri))

    def _call(self, extension: str) -> Call | None:
        """The user agent's call the extension's line shows (one in its current state)."""
        state = self.services.lines.state(extension)
        key = next((k for k, s in self.services.lines.calls.get(extension, {}).items() if s == state), "")
        return self.ua.calls.get(key) if key else None

    def _notify(self, sub: Subscription, reason: str = "") -> None:
        services = self.services
        wall = services.wall()
        if not reason and sub.left(wall) == 0:  # Expires: 0 (an unsubscribe or a fetch): the last NOTIFY
            reason = "timeout"
        body = self._body(sub)
        request = sub.notify(body, wall, contact=self._contact(sub.transport), reason=reason)
        self.ua.send_request("NOTIFY", request.uri, request.headers, services.sip_now(),
                             destination=request.destination, transport=request.transport, body=request.body)
        services.flush()
        services.calllog.server("notify", f"NOTIFY {sub.event} for {sub.resource} to {sub.user}",
                                event_package=sub.event, resource=sub.resource, user=sub.user,
                                state="terminated" if reason else "active", body=body.decode(errors="replace"),
                                cseq=sub.cseq)
        if reason:
            self._forget(sub)
        elif self.store is not None:
            self.store.save(sub)  # its CSeq (and version) went up

    def _body(self, sub: Subscription) -> bytes:
        services = self.services
        host = services.contact_host
        if sub.event == "message-summary":
            mailbox = self._mailbox_of(sub)
            new, old = services.voicemail_store.counts(mailbox) if services.config.mailboxes else (0, 0)
            return message_summary(f"sip:{mailbox}@{host}", new, old)
        if sub.event == "presence":
            return pidf(self.line(sub.resource), sub.resource)
        return dialog_info(self.line(sub.resource), sub.version, sub.resource)

    def _mailbox_of(self, sub: Subscription) -> str:
        own = self.services.config.extension(sub.user)
        return (own.mailbox or own.number) if own is not None else sub.resource

    def _contact(self, transport: str) -> str:
        return self.ua.contact(transport)


def _package(event: RequestReceived) -> str:
    return (event.request.headers.get("Event") or "").split(";", 1)[0].strip()


def _resource(event: RequestReceived) -> str:
    uri = event.request.uri
    return uri.split(":", 1)[-1].split("@", 1)[0] if "@" in uri else ""

