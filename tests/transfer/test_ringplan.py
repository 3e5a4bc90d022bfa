"""The sans-IO ring plan: parallel, sequential, nested steps, outcome mapping."""

from __future__ import annotations

from ivr.runtime.outcomes import combine, outcome_for_status
from ivr.runtime.transfer import Cancel, Dial, Finished, RingPlan


def test_status_mapping() -> None:
    assert [outcome_for_status(s) for s in (486, 600, 408, 480, 404, 410, 604, 500, 403, 488, 603)] == [
        "busy", "busy", "no_answer", "no_answer", "unavailable", "unavailable", "unavailable",
        "failed", "failed", "failed", "failed",
    ]


def test_combine_prefers_no_answer_then_busy_then_failed() -> None:
    assert combine(["unavailable", "busy", "failed"]) == "busy"
    assert combine(["busy", "no_answer"]) == "no_answer"
    assert combine(["unavailable", "failed"]) == "failed"
    assert combine([]) == "unavailable"


def test_parallel_first_answer_wins_and_the_others_are_cancelled() -> None:
    plan = RingPlan(((("201", "202", "203"), 25.0),))
    assert plan.start(100.0) == [Dial("201"), Dial("202"), Dial("203")]
    assert plan.next_timer == 125.0
    assert plan.answered("202", 103.0) == [Cancel("201"), Cancel("203"), Finished("answered", "202")]
    assert plan.finished and plan.next_timer is None
    assert plan.answered("201", 103.1) == []  # a late answer changes nothing (the adapter hangs it up)


def test_nested_steps_ring_201_to_203_then_the_mobile() -> None:
    plan = RingPlan(((("201", "202", "203"), 25.0), (("+41791234567",), 20.0)))
    plan.start(0.0)
    assert plan.timer(24.9) == []
    assert plan.timer(25.0) == [Cancel("201"), Cancel("202"), Cancel("203"), Dial("+41791234567")]
    assert plan.next_timer == 45.0
    assert plan.timer(45.0) == [Cancel("+41791234567"), Finished("no_answer", "+41791234567")]


def test_sequential_moves_on_when_a_member_is_busy() -> None:
    plan = RingPlan(((("204",), 15.0), (("205",), 15.0)))
    assert plan.start(0.0) == [Dial("204")]
    assert plan.failed("204", "busy", 2.0) == [Dial("205")]
    assert plan.next_timer == 17.0
    assert plan.failed("205", "unavailable", 3.0) == [Finished("busy", "204")]


def test_a_step_ends_early_only_when_every_target_failed() -> None:
    plan = RingPlan(((("201", "202"), 30.0), (("200",), 10.0)))
    plan.start(0.0)
    assert plan.failed("201", "busy", 1.0) == []
    assert plan.failed("202", "failed", 2.0) == [Dial("200")]
    assert plan.answered("200", 4.0) == [Finished("answered", "200")]


def test_failures_outside_the_active_step_are_ignored() -> None:
    plan = RingPlan(((("201",), 5.0), (("202",), 5.0)))
    plan.start(0.0)
    plan.timer(5.0)
    assert plan.failed("201", "busy", 5.5) == []  # its CANCEL's 487 arriving late
    assert plan.failed("202", "busy", 6.0) == [Finished("no_answer", "201")]


def test_empty_steps_and_duplicate_targets() -> None:
    plan = RingPlan(((("",), 5.0), (("201", "201"), 5.0)))
    assert plan.start(0.0) == [Dial("201")]
    assert RingPlan(()).start(0.0) == [Finished("unavailable", "")]


def test_abandon_cancels_what_rings() -> None:
    plan = RingPlan(((("201", "202"), 30.0),))
    plan.start(0.0)
    plan.failed("201", "busy", 1.0)
    assert plan.abandon() == [Cancel("202")]
    assert plan.finished and plan.timer(99.0) == []


def test_follow_me_continues_a_one_person_step_to_their_numbers() -> None:
    from ivr.runtime.transfer import with_follow_me

    numbers = {"201": ("+41791234567", "201", "203"), "202": ("+41790000000",)}
    plan = ((("201",), 20.0), (("202", "203"), 10.0), (("200",), 5.0))
    assert with_follow_me(plan, lambda t: numbers.get(t, ())) == (
        (("201",), 20.0), (("+41791234567",), 20.0), (("203",), 20.0),  # itself is not rung twice
        (("202", "203"), 10.0),  # a group step is left alone
        (("200",), 5.0),
    )


def test_ringback_is_425_hz_one_second_on_four_off() -> None:
    import numpy as np

    from ivr.media import g711
    from ivr.runtime.transfer import Ringback

    ringback = Ringback()
    frames = [ringback.frame(g711.PCMA) for _ in range(500)]
    pcm = g711.decode(b"".join(frames), g711.PCMA).astype(np.float64)
    on, off = pcm[:8000], pcm[8000:40000]
    spectrum = np.abs(np.fft.rfft(on))
    assert abs(np.argmax(spectrum) * 8000 / len(on) - 425) < 2
    assert np.max(np.abs(off)) < 50  # silence between rings
    assert frames[:250] == frames[250:]  # the cadence repeats every 5 s
