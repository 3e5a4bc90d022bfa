"""Every check of `ivr check`, one test each, asserting the exact text printed (it is the interface)."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from ivr.dsl.errors import format_diagnostics
from ivr.runtime.deployment import check_flow


def check(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str]) -> str:
    monkeypatch.chdir(tmp_path)
    prompts = tmp_path / "prompts"
    prompts.mkdir(exist_ok=True)
    (tmp_path / "secret.wav").write_bytes(b"RIFF")
    if not (prompts / "link.wav").is_symlink():
        os.symlink(tmp_path / "secret.wav", prompts / "link.wav")
    for name, text in files.items():
        (tmp_path / name).write_text(text, encoding="utf-8")
    diagnostics = check_flow([next(iter(files))], prompt_folders=[prompts])
    return format_diagnostics(diagnostics).replace(str(prompts), "PROMPTS")


MENU_THROUGH_STEPS = (
    'number default -> welcome\nmenu welcome:\n    ask "x"\n    1 -> info\n    2 -> call note()\n'
    'info:\n    say "info"\n    -> welcome\nsub note():\n    say "n"\n    return\n'
)


CASES = [
    # an unknown step, with a did-you-mean over the flow's step names
    pytest.param(
        {'unknown_step.ivr': 'number default -> start\nstart:\n    -> suport\nsupport:\n    hangup\n'},
        "unknown_step.ivr:3:8: error: unknown step 'suport'; did you mean 'support'?\n"
        '        -> suport\n'
        '           ^',
        id='unknown_step',
    ),
    # two blocks with one name
    pytest.param(
        {'dup_step.ivr': 'number default -> start\nstart:\n    hangup\nstart:\n    hangup\n'},
        "dup_step.ivr:4:1: error: duplicate step 'start'\n"
        '    start:\n'
        '    ^\n'
        "  hint: 'start' is already defined at dup_step.ivr:2:1",
        id='dup_step',
    ),
    # steps nothing leads to, and sub-flows nobody calls (warnings)
    pytest.param(
        {'unreachable.ivr': 'number default -> start\nstart:\n    hangup\nlost:\n    hangup\nsub s(a):\n    return\n'},
        "unreachable.ivr:4:1: warning: step 'lost' is never reached\n"
        '    lost:\n'
        '    ^\n'
        '  hint: no number, jump or option leads here\n'
        "unreachable.ivr:6:1: warning: sub-flow 's' is never called\n"
        '    sub s(a):\n'
        '    ^',
        id='unreachable',
    ),
    # steps that jump in a circle without ever waiting for the caller
    pytest.param(
        {'loop.ivr': 'number default -> a\na:\n    say "x"\n    -> b\nb:\n    set x = "1"\n    -> a\n'},
        'loop.ivr:7:8: error: steps loop without waiting for the caller: a -> b -> a\n'
        '        -> a\n'
        '           ^\n'
        '  hint: put a menu, a collect, `hold for ...` or a hangup in the loop',
        id='loop',
    ),
    # a step that can jump to itself without waiting
    pytest.param(
        {'self_loop.ivr': 'number default -> a\na:\n    when caller == "1" -> a\n    hangup\n'},
        'self_loop.ivr:3:27: error: steps loop without waiting for the caller: a -> a\n'
        '        when caller == "1" -> a\n'
        '                              ^\n'
        '  hint: put a menu, a collect, `hold for ...` or a hangup in the loop',
        id='self_loop',
    ),
    # a menu whose every option comes back to it (warning)
    pytest.param(
        {'menu_noway.ivr': 'number default -> m\nmenu m:\n    ask "x"\n    1 -> say "one"\n'},
        "menu_noway.ivr:2:1: warning: menu 'm' has no way out: every option comes back to the menu\n"
        '    menu m:\n'
        '    ^\n'
        '  hint: send at least one option to another step, a transfer or voicemail',
        id='menu_noway',
    ),
    # a menu without options
    pytest.param(
        {'menu_noopt.ivr': 'number default -> m\nmenu m:\n    ask "x"\n    invalid -> hangup\n'},
        "menu_noopt.ivr:2:1: error: menu 'm' has no options\n"
        '    menu m:\n'
        '    ^\n'
        '  hint: add lines like `1 -> sales`',
        id='menu_noopt',
    ),
    # a transfer that leaves outcomes unhandled
    pytest.param(
        {'transfer_cov.ivr': 'number default -> s\ns:\n    transfer to 300\n        busy -> hangup\n'},
        'transfer_cov.ivr:3:5: error: transfer to 300 does not handle: no answer, unavailable, failed\n'
        '        transfer to 300\n'
        '        ^\n'
        '  hint: add `no answer -> ...`, `unavailable -> ...`, `failed -> ...` or `else -> ...`',
        id='transfer_cov',
    ),
    # a group that leaves outcomes unhandled
    pytest.param(
        {'group_cov.ivr': 'number default -> g\ngroup g:\n    ring 201 for 20s\n    no answer -> hangup\n'},
        "group_cov.ivr:2:1: error: group 'g' does not handle: busy, unavailable, failed\n"
        '    group g:\n'
        '    ^\n'
        '  hint: add `busy -> ...`, `unavailable -> ...`, `failed -> ...` or `else -> ...`',
        id='group_cov',
    ),
    # a directory that leaves outcomes unhandled (and a missing directory file)
    pytest.param(
        {'dir_cov.ivr': 'directory staff from "staff.csv"\nnumber default -> s\ns:\n    directory staff\n'},
        'dir_cov.ivr:4:5: error: directory staff does not handle: not found, operator\n'
        '        directory staff\n'
        '        ^\n'
        '  hint: add `not found -> ...`, `operator -> ...` or `else -> ...`\n'
        'dir_cov.ivr:1:1: warning: directory file not found: staff.csv\n'
        '    directory staff from "staff.csv"\n'
        '    ^',
        id='dir_cov',
    ),
    # an unknown time zone
    pytest.param(
        {'tz.ivr': 'timezone Europe/Zurch\nnumber default -> s\ns:\n    hangup\n'},
        "tz.ivr:1:10: error: unknown time zone 'Europe/Zurch'; did you mean 'Europe/Zurich'?\n"
        '    timezone Europe/Zurch\n'
        '             ^\n'
        '  hint: use an IANA name like Europe/Zurich or UTC',
        id='tz',
    ),
    # an unknown holiday subdivision
    pytest.param(
        {'region.ivr': 'number default -> s\nhours h:\n    mon 08:00-12:00\n    closed on holidays CH-XX\ns:\n    when h is open -> hangup\n    hangup\n'},
        "region.ivr:4:24: error: unknown holiday region 'CH-XX'; subdivisions of CH: AG, AI, AR, BE, BL, BS, FR, GE, GL, GR, JU, LU, NE, NW, OW, SG, SH, SO, SZ, TG, TI, UR, VD, VS, ZG, ZH\n"
        '        closed on holidays CH-XX\n'
        '                           ^',
        id='region',
    ),
    # overlapping (warning) and empty (error) schedule ranges
    pytest.param(
        {'overlap.ivr': 'number default -> s\nhours h:\n    mon-fri 08:00-12:00\n    mon 11:00-13:00\n    tue 14:00-10:00\ns:\n    when h is open -> hangup\n    hangup\n'},
        'overlap.ivr:5:9: error: empty time range 14:00-10:00: it ends before it starts (use 24:00 for midnight)\n'
        '        tue 14:00-10:00\n'
        '            ^\n'
        'overlap.ivr:4:9: warning: time range 11:00-13:00 overlaps 08:00-12:00 on mon\n'
        '        mon 11:00-13:00\n'
        '            ^',
        id='overlap',
    ),
    # a prompt file that is in no prompt folder (warning)
    pytest.param(
        {'prompt_missing.ivr': 'number default -> s\ns:\n    play "nope.wav"\n    hangup\n'},
        'prompt_missing.ivr:3:10: warning: prompt file not found: nope.wav\n'
        '        play "nope.wav"\n'
        '             ^\n'
        '  hint: looked in PROMPTS',
        id='prompt_missing',
    ),
    # prompt paths that leave the prompt folders: .., absolute, symlink
    pytest.param(
        {'prompt_escape.ivr': 'number default -> s\ns:\n    play "../secret.wav"\n    play "/etc/passwd"\n    play "link.wav"\n    hangup\n'},
        'prompt_escape.ivr:3:10: error: prompt path escapes the prompt folders\n'
        '        play "../secret.wav"\n'
        '             ^\n'
        "  hint: write a path relative to a prompt folder, without '..'\n"
        'prompt_escape.ivr:4:10: error: prompt path escapes the prompt folders\n'
        '        play "/etc/passwd"\n'
        '             ^\n'
        "  hint: write a path relative to a prompt folder, without '..'\n"
        'prompt_escape.ivr:5:10: error: prompt path escapes the prompt folders\n'
        '        play "link.wav"\n'
        '             ^\n'
        '  hint: a symbolic link leads outside the prompt folder',
        id='prompt_escape',
    ),
    # a key or phrase bound twice in a menu
    pytest.param(
        {'key_twice.ivr': 'number default -> m\nmenu m:\n    ask "x"\n    1 -> a\n    1 or "sales" -> b\n    "Sales" -> a\na:\n    hangup\nb:\n    hangup\n'},
        "key_twice.ivr:5:5: error: key 1 is bound twice in menu 'm'\n"
        '        1 or "sales" -> b\n'
        '        ^\n'
        '  hint: the first is at key_twice.ivr:4:5\n'
        'key_twice.ivr:6:5: error: phrase "Sales" is used twice in menu \'m\'\n'
        '        "Sales" -> a\n'
        '        ^\n'
        '  hint: the first is at key_twice.ivr:5:10',
        id='key_twice',
    ),
    # an undefined variable, in a string and in a condition
    pytest.param(
        {'undef_var.ivr': 'number default -> s\ncollect account:\n    digits 4\n    then -> s\ns:\n    say "Your number is {acount}"\n    when acount == "1" -> account\n    hangup\n'},
        "undef_var.ivr:6:25: error: undefined variable 'acount'; did you mean 'account'?\n"
        '        say "Your number is {acount}"\n'
        '                            ^\n'
        '  hint: variables come from `set`, `collect`, `record`, sub-flow parameters, or are caller, called, time, weekday, date\n'
        "undef_var.ivr:7:10: error: undefined variable 'acount'; did you mean 'account'?\n"
        '        when acount == "1" -> account\n'
        '             ^\n'
        '  hint: variables come from `set`, `collect`, `record`, sub-flow parameters, or are caller, called, time, weekday, date',
        id='undef_var',
    ),
    # a call with the wrong number of arguments, and of an unknown sub-flow
    pytest.param(
        {'sub_args.ivr': 'number default -> s\nsub leave(box):\n    voicemail {box}\ns:\n    call leave("1", "2")\n    call leav("1")\n'},
        "sub_args.ivr:5:5: error: sub-flow 'leave' takes 1 argument, not 2\n"
        '        call leave("1", "2")\n'
        '        ^\n'
        '  hint: defined as `sub leave(box)` at sub_args.ivr:2:1\n'
        "sub_args.ivr:6:5: error: unknown sub-flow 'leav'; did you mean 'leave'?\n"
        '        call leav("1")\n'
        '        ^',
        id='sub_args',
    ),
    # a called number bound to two steps
    pytest.param(
        {'number_twice.ivr': 'number 100 -> s\nnumber 100, 101 -> t\ns:\n    hangup\nt:\n    hangup\n'},
        "number_twice.ivr:2:1: error: number 100 is bound twice, to 's' and 't'\n"
        '    number 100, 101 -> t\n'
        '    ^\n'
        '  hint: the first is at number_twice.ivr:1:1',
        id='number_twice',
    ),
    # unknown hours/switch names and states that do not fit them
    pytest.param(
        {'cond_names.ivr': 'switch night\nnumber default -> s\nhours office:\n    mon 08:00-12:00\ns:\n    when ofice is open -> s\n    when office is on -> s\n    when night is open -> s\n    hangup\n'},
        "cond_names.ivr:6:10: error: unknown hours or switch 'ofice'; did you mean 'office'?\n"
        '        when ofice is open -> s\n'
        '             ^\n'
        '  hint: declare it with `hours NAME:` or `switch NAME`\n'
        'cond_names.ivr:6:27: error: steps loop without waiting for the caller: s -> s\n'
        '        when ofice is open -> s\n'
        '                              ^\n'
        '  hint: put a menu, a collect, `hold for ...` or a hangup in the loop\n'
        "cond_names.ivr:7:10: error: hours 'office' is open or closed, not on\n"
        '        when office is on -> s\n'
        '             ^\n'
        "cond_names.ivr:8:10: error: switch 'night' is on or off, not open\n"
        '        when night is open -> s\n'
        '             ^',
        id='cond_names',
    ),
    # transfer to an unknown group, and to a step
    pytest.param(
        {'group_ref.ivr': 'number default -> s\ns:\n    transfer to salse else hangup\n    transfer to t else hangup\nt:\n    hangup\ngroup sales:\n    ring 201 for 20s\n    else -> hangup\n'},
        "group_ref.ivr:3:17: error: unknown group 'salse'; did you mean 'sales'?\n"
        '        transfer to salse else hangup\n'
        '                    ^\n'
        "group_ref.ivr:4:17: error: 't' is a step, not a group\n"
        '        transfer to t else hangup\n'
        '                    ^\n'
        '  hint: use `-> t` to go to it',
        id='group_ref',
    ),
    # transfer to the on-call numbers of an unknown group; a step named pikett is still a step
    pytest.param(
        {'pikett_ref.ivr': 'number default -> pikett\npikett:\n    transfer to pikett salse else hangup\n'
         '    transfer to pikett sales\n        else -> pikett\ngroup sales:\n    ring 201 for 20s\n    else -> hangup\n'},
        "pikett_ref.ivr:3:24: error: unknown group 'salse'; did you mean 'sales'?\n"
        '        transfer to pikett salse else hangup\n'
        '                           ^',
        id='pikett_group_ref',
    ),
    # an undeclared directory
    pytest.param(
        {'unknown_dir.ivr': 'number default -> s\ns:\n    directory stuff else hangup\n'},
        "unknown_dir.ivr:3:5: error: unknown directory 'stuff'\n"
        '        directory stuff else hangup\n'
        '        ^\n'
        '  hint: declare it: directory stuff from "staff.csv"',
        id='unknown_dir',
    ),
    # return outside a sub-flow
    pytest.param(
        {'return_outside.ivr': 'number default -> s\ns:\n    return\n'},
        'return_outside.ivr:3:5: error: return outside a sub-flow\n'
        '        return\n'
        '        ^\n'
        '  hint: a step ends with a jump or `hangup`',
        id='return_outside',
    ),
    # files that include each other, and a missing include
    pytest.param(
        {'a.ivr': 'include "b.ivr"\nnumber default -> s\ns:\n    hangup\n', 'b.ivr': 'include "a.ivr"\ninclude "missing.ivr"\n'},
        'b.ivr:1:1: error: include cycle: a.ivr -> b.ivr -> a.ivr\n'
        '    include "a.ivr"\n'
        '    ^\n'
        '  hint: remove one of the includes\n'
        'b.ivr:2:1: error: cannot include "missing.ivr": No such file or directory\n'
        '    include "missing.ivr"\n'
        '    ^',
        id='include_cycle',
    ),
    # a collect without `then`, and digits with min > max
    pytest.param(
        {'collect.ivr': 'number default -> c\ncollect c:\n    digits 10-6\n'},
        "collect.ivr:2:1: error: collect 'c' does not say where to go with the digits\n"
        '    collect c:\n'
        '    ^\n'
        '  hint: add `then -> STEP`\n'
        'collect.ivr:3:5: error: digits 10-6: the minimum is larger than the maximum\n'
        '        digits 10-6\n'
        '        ^',
        id='collect',
    ),
    # a setting given twice with different values
    pytest.param(
        {'dup_setting.ivr': 'timezone UTC\ntimezone Europe/Zurich\nnumber default -> s\ns:\n    hangup\n'},
        "dup_setting.ivr:2:1: error: timezone is set twice, to 'UTC' and 'Europe/Zurich'\n"
        '    timezone Europe/Zurich\n'
        '    ^\n'
        '  hint: the first is at dup_setting.ivr:1:1',
        id='dup_setting',
    ),
    # a flow without any number
    pytest.param(
        {'no_entry.ivr': 's:\n    hangup\n'},
        'no_entry.ivr:1:1: error: the flow has no entry point\n'
        '    s:\n'
        '    ^\n'
        '  hint: add `number default -> STEP` or `number +41... -> STEP`',
        id='no_entry',
    ),
    # an hours block following an undeclared switch
    pytest.param(
        {'switch_unknown.ivr': 'number default -> s\nhours h:\n    mon 08:00-12:00\n    closed when nigth\ns:\n    when h is open -> hangup\n    hangup\n'},
        "switch_unknown.ivr:4:5: error: unknown switch 'nigth'\n"
        '        closed when nigth\n'
        '        ^\n'
        '  hint: declare it at file level: switch nigth',
        id='switch_unknown',
    ),
    # an outcome that does not belong to a transfer, and one handled twice
    pytest.param(
        {'outcome_bad.ivr': 'number default -> s\ns:\n    transfer to 100\n        selected -> hangup\n        busy -> hangup\n        busy -> hangup\n        else -> hangup\n'},
        "outcome_bad.ivr:4:9: error: 'selected' is not an outcome of transfer to 100\n"
        '            selected -> hangup\n'
        '            ^\n'
        '  hint: its outcomes are answered, busy, no answer, unavailable, failed\n'
        "outcome_bad.ivr:6:9: error: outcome 'busy' is handled twice\n"
        '            busy -> hangup\n'
        '            ^\n'
        '  hint: the first is at outcome_bad.ivr:5:9',
        id='outcome_bad',
    ),
    # wait and a menu event given twice
    pytest.param(
        {'wait_twice.ivr': 'number default -> m\nmenu m:\n    wait 5s\n    wait 6s\n    1 -> hangup\n    invalid -> hangup\n    invalid -> hangup\n'},
        "wait_twice.ivr:4:5: error: wait is given twice in menu 'm'\n"
        '        wait 6s\n'
        '        ^\n'
        '  hint: the first is at wait_twice.ivr:3:5\n'
        "wait_twice.ivr:7:5: error: 'invalid' is handled twice in menu 'm'\n"
        '        invalid -> hangup\n'
        '        ^\n'
        '  hint: the first is at wait_twice.ivr:6:5',
        id='wait_twice',
    ),
    # a syntax error reaches check_flow as a diagnostic
    pytest.param(
        {'syntax.ivr': 'number default -> s\ns:\n    sya "x"\n'},
        "syntax.ivr:3:5: error: unknown keyword 'sya'; did you mean 'say'?\n"
        '        sya "x"\n'
        '        ^',
        id='syntax',
    ),
    # a line after the step has ended (jump, otherwise, hangup, voicemail ...) (warning)
    pytest.param(
        {"dead.ivr": 'number default -> s\ns:\n    otherwise -> t\n    say "never"\nt:\n    hangup\n    hangup\n'},
        "dead.ivr:4:5: warning: this line is never run: the step ends at the `otherwise` before it\n"
        '        say "never"\n'
        "        ^\n"
        "dead.ivr:7:5: warning: this line is never run: the step ends at the `hangup` before it\n"
        "        hangup\n"
        "        ^",
        id='dead_code',
    ),
    # hold without a duration does not wait: a loop through it spins; one that speaks and drains does not
    pytest.param(
        {"hold.ivr": 'number default -> a\na:\n    hold\n    -> a\nb:\n    say "x"\n    hold\n    -> b\n'},
        'hold.ivr:4:8: error: steps loop without waiting for the caller: a -> a\n'
        '        -> a\n'
        '           ^\n'
        '  hint: put a menu, a collect, `hold for ...` or a hangup in the loop\n'
        "hold.ivr:5:1: warning: step 'b' is never reached\n"
        '    b:\n'
        '    ^\n'
        '  hint: no number, jump or option leads here',
        id='loop_through_hold_without_prompts',
    ),
    # a file that does not parse: only its syntax error, no noise about the steps it would define
    pytest.param(
        {
            "main.ivr": 'include "more.ivr"\nnumber default -> s\ns:\n    -> t\n',
            "more.ivr": "t\n    hangup\n",
        },
        "more.ivr:1:2: error: missing ':' after the step name 't'\n"
        "    t\n"
        "     ^\n"
        "  hint: a step starts with its name and a colon, e.g. `welcome:`",
        id='syntax_error_hides_the_name_checks',
    ),
    # sub-flows that call themselves through another
    pytest.param(
        {"rec.ivr": 'number default -> s\ns:\n    call a()\nsub a():\n    call b()\nsub b():\n    say "x"\n    call a()\n'},
        "rec.ivr:8:5: error: sub-flow 'a' calls itself: a -> b -> a\n"
        "        call a()\n"
        "        ^\n"
        "  hint: sub-flows cannot be recursive; use a step and `->` to repeat",
        id='recursive_sub_flows',
    ),
    # a jump to an hours block instead of a step
    pytest.param(
        {"h.ivr": "number default -> office\nhours office:\n    mon 08:00-12:00\n"},
        "h.ivr:1:19: error: 'office' is an hours block, not a step\n"
        "    number default -> office\n"
        "                      ^\n"
        "  hint: branch on it: `when office is open -> STEP`\n"
        "h.ivr:2:1: warning: hours 'office' is never used\n"
        "    hours office:\n"
        "    ^\n"
        "  hint: branch on it: `when office is open -> STEP`",
        id='jump_to_hours',
    ),
    # a group without ring lines
    pytest.param(
        {'group_nobody.ivr': 'number default -> g\ngroup g:\n    else -> hangup\n'},
        "group_nobody.ivr:2:1: error: group 'g' rings nobody\n"
        '    group g:\n'
        '    ^\n'
        '  hint: add `ring 201, 202 together for 20s`',
        id='group_nobody',
    ),
    # a collect of zero digits, and `then` given twice
    pytest.param(
        {'collect_more.ivr': 'number default -> c\ncollect c:\n    digits 0-4\n    then -> c\n    then -> c\n'},
        'collect_more.ivr:3:5: error: digits: at least 1 digit must be collected\n'
        '        digits 0-4\n'
        '        ^\n'
        "collect_more.ivr:5:13: error: then is given twice in collect 'c'\n"
        '        then -> c\n'
        '                ^',
        id='collect_more',
    ),
    # bad weekday, date and time in an hours block (schedule module messages, at their lines)
    pytest.param(
        {"hours_values.ivr": (
            "number default -> s\nhours h:\n    tue 08:00-12:00\n    mondy 08:00-12:00\n    closed 2026-13-01\n"
            "    mon 25:00-26:00\ns:\n    when h is open -> hangup\n    hangup\n"
        )},
        "hours_values.ivr:4:5: error: unknown weekday 'mondy'; did you mean 'mon'?\n"
        '        mondy 08:00-12:00\n'
        '        ^\n'
        'hours_values.ivr:5:12: error: bad date 2026-13-01; expected YYYY-MM-DD\n'
        '        closed 2026-13-01\n'
        '               ^\n'
        "hours_values.ivr:6:9: error: bad time of day '25:00'; expected HH:MM between 00:00 and 24:00\n"
        '        mon 25:00-26:00\n'
        '            ^',
        id='hours_values',
    ),
    # `weekdays` is not a day: the hint is the span mon-fri (difflib alone said 'wed')
    pytest.param(
        {"weekdays.ivr": (
            "number default -> s\nhours office:\n    weekdays 07:30-18:00\n"
            "s:\n    when office is open -> hangup\n    hangup\n"
        )},
        "weekdays.ivr:3:5: error: unknown weekday 'weekdays'; did you mean 'mon-fri'?\n"
        "        weekdays 07:30-18:00\n"
        "        ^\n"
        "weekdays.ivr:2:1: warning: hours 'office' are never open: add times like mon-fri 08:00-17:00\n"
        "    hours office:\n"
        "    ^",
        id='weekdays_suggests_the_span',
    ),
    # `transfer to 10, 11` must say how: the hint shows both forms with the statement's targets and time
    pytest.param(
        {"several.ivr": 'number default -> s\ns:\n    transfer to 10, 11, "+41791234567" for 20s\n        else -> hangup\n'},
        'several.ivr:3:21: error: transfer to 10, 11, "+41791234567": say how to ring several targets\n'
        '        transfer to 10, 11, "+41791234567" for 20s\n'
        '                        ^\n'
        '  hint: `transfer to 10, 11, "+41791234567" together for 20s` rings them all at once, '
        '`transfer to 10, 11, "+41791234567" in turn for 20s` one after another (each for 20s)',
        id='several_targets_without_a_mode',
    ),
    # a group cannot be one of several targets; a REFER hands the call to one target
    pytest.param(
        {"several_bad.ivr": (
            "number default -> s\ns:\n    transfer to sales, 11 together else hangup\n"
            "    transfer to 10, 11 in turn by refer else hangup\n"
            "group sales:\n    ring 201 for 5s\n    else -> hangup\n"
        )},
        "several_bad.ivr:3:17: error: 'sales' is a group: it cannot be rung with other targets\n"
        "        transfer to sales, 11 together else hangup\n"
        "                    ^\n"
        "  hint: transfer to the group alone (`transfer to sales`) or add the numbers to its ring lines\n"
        "several_bad.ivr:4:5: error: transfer to 10, 11 by refer: a REFER hands the call to one target\n"
        "        transfer to 10, 11 in turn by refer else hangup\n"
        "        ^\n"
        "  hint: ring several targets without `by refer`, or refer to one",
        id='several_targets_with_a_group_or_by_refer',
    ),
    # `record` needs ivr in the call: not with `by refer`, nor with a group that refers
    pytest.param(
        {"refer_record.ivr": (
            "number default -> s\ns:\n    transfer to 300 by refer record else hangup\n"
            "    transfer to sales record else hangup\n"
            "group sales:\n    ring 201 for 5s\n    by refer\n    else -> hangup\n"
        )},
        "refer_record.ivr:3:5: error: transfer to 300: a transfer by refer cannot be recorded\n"
        "        transfer to 300 by refer record else hangup\n"
        "        ^\n"
        "  hint: ivr leaves a call it hands over by REFER: drop `by refer` to record, or `record` to refer\n"
        "refer_record.ivr:4:5: error: transfer to sales: a transfer by refer cannot be recorded\n"
        "        transfer to sales record else hangup\n"
        "        ^\n"
        "  hint: ivr leaves a call it hands over by REFER: drop `by refer` to record, or `record` to refer",
        id='refer_record',
    ),
    # asking for the temporary greeting and refusing it in one step
    pytest.param(
        {"no_temp.ivr": "number default -> s\ns:\n    voicemail 300 temporary no temporary\n"},
        "no_temp.ivr:3:5: error: `temporary no temporary`: this voicemail asks for the temporary greeting and refuses it\n"
        "        voicemail 300 temporary no temporary\n"
        "        ^\n"
        "  hint: keep one of the two",
        id='voicemail_temporary_and_no_temporary',
    ),
    # a number or jump that names a sub-flow
    pytest.param(
        {'sub_as_step.ivr': 'number default -> f\nsub f():\n    return\n'},
        "sub_as_step.ivr:1:19: error: 'f' is a sub-flow, not a step\n"
        '    number default -> f\n'
        '                      ^\n'
        '  hint: use `call f(...)`',
        id='sub_as_step',
    ),
    # an inter-digit timeout in a menu, where it does nothing (warning)
    pytest.param(
        {"b.ivr": "number default -> m\nmenu m:\n    wait 5s, between 2s\n    1 -> hangup\n"},
        "b.ivr:3:5: warning: `between` has no effect in a menu\n"
        "        wait 5s, between 2s\n"
        "        ^\n"
        "  hint: the time between digits applies to `collect`",
        id='between_in_a_menu',
    ),
    # a step calls a sub-flow that jumps back to the step: a loop found by the fuzzer
    pytest.param(
        {"subloop.ivr": 'number default -> a\na:\n    call s("y")\nsub s(p):\n    when caller starts with "+41" -> a\n    return\n'},
        'subloop.ivr:5:38: error: steps loop without waiting for the caller: a -> s -> a\n'
        '        when caller starts with "+41" -> a\n'
        '                                         ^\n'
        '  hint: put a menu, a collect, `hold for ...` or a hangup in the loop',
        id='loop_through_a_sub_flow_that_jumps_out',
    ),
    # one run reports every problem: the loop `start -> start` and an unknown step elsewhere
    pytest.param(
        {"both.ivr": "number default -> start\nstart:\n    -> start\nother:\n    -> nowhere\n"},
        "both.ivr:3:8: error: steps loop without waiting for the caller: start -> start\n"
        "        -> start\n"
        "           ^\n"
        "  hint: put a menu, a collect, `hold for ...` or a hangup in the loop\n"
        "both.ivr:5:8: error: unknown step 'nowhere'; did you mean 'other'?\n"
        "        -> nowhere\n"
        "           ^",
        id='a_loop_is_reported_next_to_other_errors',
    ),
    # `2 -> welcome` inside `menu welcome` comes back to the menu (warning)
    pytest.param(
        {"self.ivr": 'number default -> welcome\nmenu welcome:\n    ask "x"\n    1 -> say "one"\n    2 -> welcome\n'},
        "self.ivr:2:1: warning: menu 'welcome' has no way out: every option comes back to the menu\n"
        "    menu welcome:\n"
        "    ^\n"
        "  hint: send at least one option to another step, a transfer or voicemail",
        id='a_menu_option_to_the_menu_itself_is_no_way_out',
    ),
    # a step that jumps back and a sub-flow that returns both come back to the menu (warning)
    pytest.param(
        {"through.ivr": MENU_THROUGH_STEPS},
        "through.ivr:2:1: warning: menu 'welcome' has no way out: every option comes back to the menu\n"
        "    menu welcome:\n"
        "    ^\n"
        "  hint: send at least one option to another step, a transfer or voicemail",
        id='a_menu_whose_options_go_through_steps_that_come_back_has_no_way_out',
    ),
    # the flow's zone once (not again for each hours block using it); an hours block's own zone at its name
    pytest.param(
        {"zones.ivr": (
            "timezone Europe/Zurch\nnumber default -> s\nhours h:\n    timezone Mars/Base\n    mon 08:00-12:00\n"
            "hours k:\n    mon 08:00-12:00\ns:\n    when h is open -> hangup\n    when k is open -> hangup\n    hangup\n"
        )},
        "zones.ivr:1:10: error: unknown time zone 'Europe/Zurch'; did you mean 'Europe/Zurich'?\n"
        "    timezone Europe/Zurch\n"
        "             ^\n"
        "  hint: use an IANA name like Europe/Zurich or UTC\n"
        "zones.ivr:4:14: error: unknown time zone 'Mars/Base'\n"
        "        timezone Mars/Base\n"
        "                 ^\n"
        "  hint: use an IANA name like Europe/Zurich or UTC",
        id='a_bad_time_zone_is_reported_once_at_its_name',
    ),
    # the second range of a line, a reversed date range, an open date's range
    pytest.param(
        {"ranges.ivr": (
            "number default -> s\nhours h:\n    mon-fri 08:00-12:00, 14:00-13:00\n    closed 2026-12-31 .. 2026-12-24\n"
            "    open 2026-12-27 10:00-09:00\ns:\n    when h is open -> hangup\n    hangup\n"
        )},
        "ranges.ivr:3:26: error: empty time range 14:00-13:00: it ends before it starts (use 24:00 for midnight)\n"
        "        mon-fri 08:00-12:00, 14:00-13:00\n"
        "                             ^\n"
        "ranges.ivr:4:12: error: date range 2026-12-31 .. 2026-12-24 ends before it starts\n"
        "        closed 2026-12-31 .. 2026-12-24\n"
        "               ^\n"
        "ranges.ivr:5:21: error: empty time range 10:00-09:00: it ends before it starts (use 24:00 for midnight)\n"
        "        open 2026-12-27 10:00-09:00\n"
        "                        ^",
        id='the_caret_points_at_the_range',
    ),
    # a group's `ring` line in a step: both forms are shown
    pytest.param(
        {"ring_in_step.ivr": "number default -> s\ns:\n    ring 10, 11 together for 20s\n"},
        "ring_in_step.ivr:3:5: error: 'ring' lines belong in a group\n"
        "        ring 10, 11 together for 20s\n"
        "        ^\n"
        "  hint: in a step, `transfer to 201, 202 together for 20s` rings several targets at once, "
        "`transfer to 201, 202 in turn for 20s` one after another",
        id="ring_in_step",
    ),
    # the mode after the ring time: both forms are shown
    pytest.param(
        {"mode_late.ivr": "number default -> s\nmenu s:\n    1 -> transfer to 10, 11 for 20s in turn\n"},
        "mode_late.ivr:3:37: error: `in turn` comes right after the targets\n"
        "        1 -> transfer to 10, 11 for 20s in turn\n"
        "                                        ^\n"
        "  hint: write `transfer to 201, 202 together for 20s` or `transfer to 201, 202 in turn for 20s`",
        id="mode_late",
    ),
    # an option to a step that hangs up, or a step that may branch away, is a way out
    pytest.param(
        {
            "leaves.ivr": MENU_THROUGH_STEPS.replace("    -> welcome\n", '    when caller == "1" -> bye\n    -> welcome\n')
            + "bye:\n    hangup\n"
        },
        "",
        id="a_menu_with_one_option_that_leaves_is_fine",
    ),
]


@pytest.mark.parametrize(("files", "expected"), CASES)
def test_check_prints(tmp_path: Path, monkeypatch: pytest.MonkeyPatch, files: dict[str, str], expected: str) -> None:
    """`ivr check` on the case's flow files prints exactly the expected diagnostics."""
    assert check(tmp_path, monkeypatch, files) == expected


def test_directory_keypad_key(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """the keypad key cannot be the operator's 0, and needs both speech and keys"""
    files = {"keypad_key.ivr": (
        'directory staff from "staff.csv"\nnumber default -> s\ns:\n'
        "    directory staff press 0 for keypad else hangup\n"
        "    directory staff by speech press 9 for keypad else hangup\n"
    )}
    (tmp_path / "staff.csv").write_text("display_name,extension\nAlice Johnson,201\n", encoding="utf-8")
    assert check(tmp_path, monkeypatch, files) == (
        "keypad_key.ivr:4:5: error: `press 0 for keypad`: 0 is the operator's key in the directory\n"
        "        directory staff press 0 for keypad else hangup\n"
        "        ^\n"
        "  hint: choose another key, like `press 9 for keypad`\n"
        "keypad_key.ivr:5:5: error: `press 9 for keypad` switches from speech to the keypad: directory staff needs both\n"
        "        directory staff by speech press 9 for keypad else hangup\n"
        "        ^\n"
        "  hint: write `by speech by keys` (or neither: both is the default)"
    )


def test_unreadable_flow_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """a flow file that does not exist"""
    monkeypatch.chdir(tmp_path)
    assert format_diagnostics(check_flow(["nope.ivr"])) == "nope.ivr:1:1: error: cannot read flow file: No such file or directory"
