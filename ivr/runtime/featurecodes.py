"""The night switch and follow-me codes a phone dials (``[features]``, ivr.runtime.features).

A sans-IO sub-machine (the shape of :class:`~ivr.voicemail.dialogue.Dialogue`, as the
conference's PIN dialogue) that the call runner plugs in for an authenticated phone's call
to one of these codes, answered at once and with no flow of its own:

* ``night_on`` / ``night_off`` (``*41`` / ``*40``): the caller types ``night_pin`` and ``#``
  (or pauses).  A wrong PIN is asked again; the third wrong one ends the call
  (``HangupCall("feature_pin")``) and is logged with the caller's extension.  The right
  one flips ``night_switch`` for every new call (``set_switch``, run in a storage worker:
  the switches file, or the shared database's table) and the caller hears the new position.
* ``follow_me_on`` / ``follow_me_off`` (``*51`` / ``*50``): no PIN (the phone proved its
  user already).  ``set_follow_me`` switches the caller's follow-me numbers off, keeping
  them aside, or on again (:func:`ivr.runtime.forwarding.pause_follow_me`); the caller hears
  which, or that there are no numbers to switch on.

Then the call ends (``HangupCall("feature_done")``).  Every sentence is a ``features.*``
message of the call's catalogue (ivr/language/messages).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from ivr.dsl.events import Action, HangupCall
from ivr.runtime.features import FollowMe, NightSwitch
from ivr.voicemail.dialogue import PinEntry

log = logging.getLogger("ivr.runtime.featurecodes")

MAX_PIN_TRIES = 3


class FeatureCode(PinEntry):
    """One phone's night-switch or follow-me code (see the module docstring)."""

    pin_question = "features.ask_pin"

    action = "feature"

    def __init__(
        self,
        feature: NightSwitch | FollowMe,
        *,
        caller: str,
        set_switch: Callable[[str, bool], object],
        set_follow_me: Callable[[bool], tuple[str, ...]],
        language: str = "",
    ) -> None:
        super().__init__(language=language)
        self.feature = feature
        self.caller = caller
        self.set_switch = set_switch
        self.set_follow_me = set_follow_me
        self.failures = 0
        self._digits = ""

    def begin(self, now: float) -> list[Action]:
        feature = self.feature
        if isinstance(feature, NightSwitch):
            return self._ask_pin()
        return self.fetch("switching", lambda: self.set_follow_me(feature.on), self._follow_me_set, self._failed)

    def on_hangup(self, now: float) -> list[Action]:
        return self.finish("left")

    # ------------------------------------------------------------------ the PIN

    def _check_pin(self) -> list[Action]:
        self.next_timer = None
        feature = self.feature
        assert isinstance(feature, NightSwitch)
        if self._digits == feature.pin:
            return self.fetch("switching", lambda: self.set_switch(feature.switch, feature.on), self._switched,
                              self._failed)
        self.failures += 1
        log.warning("night switch code: wrong PIN from %s (%d of %d)", self.caller, self.failures, MAX_PIN_TRIES)
        if self.failures >= MAX_PIN_TRIES:
            log.error("night switch code: %s hung up on after %d wrong PINs", self.caller, self.failures)
            return self.enter("locked", [self.say("features.pin_goodbye")], barge_in=False)
        return [self.say("features.wrong_pin"), *self._ask_pin()]

    def _done_locked(self, now: float) -> list[Action]:
        self.finish("pin_failed")
        return [HangupCall("feature_pin")]

    # ------------------------------------------------------------------ the change

    def _switched(self, result: object, now: float) -> list[Action]:
        feature = self.feature
        assert isinstance(feature, NightSwitch)
        log.info("night switch code: %s turned %s %s", self.caller, feature.switch, "on" if feature.on else "off")
        return self._tell("night_on" if feature.on else "night_off")

    def _follow_me_set(self, numbers: tuple[str, ...], now: float) -> list[Action]:
        if not self.feature.on:
            return self._tell("follow_me_off")
        return self._tell("follow_me_on" if numbers else "follow_me_none")

    def _failed(self, error: str, now: float) -> list[Action]:
        log.error("feature code of %s failed: %s", self.caller, error)
        return self._tell("failed")

    def _tell(self, message: str) -> list[Action]:
        return self.enter("told", [self.say(f"features.{message}")], barge_in=False)

    def _done_told(self, now: float) -> list[Action]:
        self.finish("done")
        return [HangupCall("feature_done")]
