"""Grammar coverage (every construct of docs/flow-language.md) and friendly syntax errors."""

from __future__ import annotations

from pathlib import Path

import pytest

from ivr.dsl import ast
from ivr.dsl.errors import FlowError, SourcePos
from ivr.dsl.parser import parse_file, parse_text

DATA = Path(__file__).parent / "data"


def parse(text: str) -> list[ast.Item]:
    return list(parse_text(text, "t.ivr").items)


def one(text: str) -> ast.Item:
    items = parse(text)
    assert len(items) == 1
    return items[0]


def body(text: str) -> tuple[ast.Stmt, ...]:
    step = one("s:\n" + "".join(f"    {line}\n" for line in text.strip("\n").splitlines()))
    assert isinstance(step, ast.Step)
    return step.body


def syntax_error(text: str) -> str:
    with pytest.raises(FlowError) as info:
        parse_text(text, "t.ivr")
    assert len(info.value.diagnostics) == 1
    return str(info.value)


# --------------------------------------------------------------------------- file level


def test_settings_and_declarations() -> None:
    items = parse(
        'include "common.ivr"\ntimezone Europe/Zurich\nvoice en-us rate 170\nlanguage de-CH\n'
        'hold music "moh/"\ndirectory staff from "staff.csv"\nswitch night\n'
    )
    assert [type(i).__name__ for i in items] == [
        "Include", "Setting", "Setting", "Setting", "Setting", "Setting", "DirectorySource", "SwitchDecl",
    ]
    settings = {i.key: i.value for i in items if isinstance(i, ast.Setting)}
    assert settings == {"timezone": "Europe/Zurich", "voice": "en-us", "rate": "170", "language": "de-CH",
                        "hold_music": "moh/"}
    assert items[0] == ast.Include(pos=SourcePos("t.ivr", 1, 1, 2, 1), path="common.ivr")
    directory = items[6]
    assert isinstance(directory, ast.DirectorySource) and (directory.name, directory.path) == ("staff", "staff.csv")


def test_numbers() -> None:
    items = parse('number +41435435570 -> start\nnumber 100, 101 -> support\nnumber default -> start\nnumber "0041 44" -> x\n')
    assert [(i.numbers, i.step) for i in items if isinstance(i, ast.NumberEntry)] == [
        (("+41435435570",), "start"), (("100", "101"), "support"), (("default",), "start"), (("0041 44",), "x"),
    ]


def test_hours_block() -> None:
    hours = one(
        "hours office:\n"
        "    mon-fri 08:00-12:00, 13:30-17:30\n"
        "    sat, sun 09:00-12:00\n"
        "    closed on holidays CH-ZH, DE\n"
        "    closed 2026-12-24 .. 2027-01-02\n"
        "    closed 2026-12-31\n"
        "    open 2026-12-27 10:00-14:00\n"
        "    closed when night\n"
        "    timezone America/New_York\n"
    )
    assert isinstance(hours, ast.HoursDef)
    lines = [(type(x).__name__, *[v for k, v in vars(x).items() if not k.endswith("pos")]) for x in hours.lines]
    assert lines == [
        ("WeeklyLine", "mon-fri", ("08:00-12:00", "13:30-17:30")),
        ("WeeklyLine", "sat,sun", ("09:00-12:00",)),
        ("HolidaysLine", ("CH-ZH", "DE")),
        ("ClosedLine", "2026-12-24", "2027-01-02"),
        ("ClosedLine", "2026-12-31", "2026-12-31"),
        ("OpenLine", "2026-12-27", ("10:00-14:00",)),
        ("SwitchLine", "night"),
        ("HoursTimezone", "America/New_York"),
    ]
    # Where each range, region, date and zone is written: diagnostics point at them.
    places = [
        [(p.line, p.column) for k, v in vars(x).items() if k.endswith("_pos") for p in (v if isinstance(v, tuple) else (v,))]
        for x in hours.lines
    ]
    assert places == [
        [(2, 13), (2, 26)], [(3, 14)], [(4, 24), (4, 31)], [(5, 12), (5, 26)], [(6, 12)],
        [(7, 10), (7, 21)], [], [(9, 14)],
    ]


# --------------------------------------------------------------------------- statements


def test_say_play_set_and_barge_in() -> None:
    stmts = body('say "Hello {caller}"\nsay "x" no barge-in\nplay "a.wav"\nplay "b.wav" no barge-in\nset x = caller\nset y = "1"\nset z = 42')
    say, say2, play, play2, set1, set2, set3 = stmts
    assert isinstance(say, ast.Say) and say.barge_in and say.text.variables() == ("caller",)
    assert isinstance(say2, ast.Say) and not say2.barge_in
    assert isinstance(play, ast.Play) and play.path.text == "a.wav" and play.barge_in
    assert isinstance(play2, ast.Play) and not play2.barge_in
    assert isinstance(set1, ast.Set) and set1.value == ast.Var(pos=SourcePos("t.ivr", 6, 13, 6, 19), name="caller")
    assert isinstance(set2, ast.Set) and isinstance(set2.value, ast.Str)
    assert isinstance(set3, ast.Set) and isinstance(set3.value, ast.Num) and set3.value.text == "42"


def test_string_escapes() -> None:
    (say,) = body(r'say "a \"quoted\" word and a \\ backslash"')
    assert isinstance(say, ast.Say) and say.text.text == 'a "quoted" word and a \\ backslash'


def test_jumps_and_conditions() -> None:
    stmts = body(
        'when office is open -> welcome\n'
        'when night is on and not (caller starts with "+4179" or caller in ("1", "2")) -> x\n'
        'when account >= 500000 -> y\n'
        'otherwise -> z\n'
        '-> a\n'
        'goto b\n'
    )
    when1, when2, when3, other, jump, goto = stmts
    assert isinstance(when1, ast.When) and isinstance(when1.cond, ast.IsState)
    assert (when1.cond.name, when1.cond.state) == ("office", "open")
    assert isinstance(when2, ast.When) and isinstance(when2.cond, ast.And)
    assert isinstance(when2.cond.right, ast.Not) and isinstance(when2.cond.right.cond, ast.Or)
    assert isinstance(when2.cond.right.cond.left, ast.StartsWith)
    in_list = when2.cond.right.cond.right
    assert isinstance(in_list, ast.InList) and [v.text for v in in_list.options if isinstance(v, ast.Str)] == ["1", "2"]
    assert isinstance(when3, ast.When) and isinstance(when3.cond, ast.Compare) and when3.cond.op == ">="
    assert isinstance(other, ast.Otherwise) and other.target == ast.Goto(pos=other.target.pos, step="z")
    assert isinstance(jump, ast.Goto) and jump.step == "a"
    assert isinstance(goto, ast.Goto) and goto.step == "b"


def test_and_binds_tighter_than_or() -> None:
    (when,) = body('when a == "1" or b == "2" and c == "3" -> x')
    assert isinstance(when, ast.When) and isinstance(when.cond, ast.Or) and isinstance(when.cond.right, ast.And)


def test_actions() -> None:
    stmts = body(
        'call leave_message("200", box)\nreturn\nhold\nhold music "moh/" for 30s\n'
        'record into note max 60s silence 3s no beep\nvoicemail 200\nvoicemail {box} busy review\n'
        'voicemail access\nvoicemail access 200\nhangup'
    )
    call, ret, hold1, hold2, record, vm1, vm2, vma1, vma2, hangup = stmts
    assert isinstance(call, ast.Call) and call.sub == "leave_message" and len(call.args) == 2
    assert isinstance(ret, ast.Return)
    assert isinstance(hold1, ast.Hold) and hold1.music is None and hold1.duration is None
    assert isinstance(hold2, ast.Hold) and hold2.music is not None and hold2.duration == 30.0
    assert isinstance(record, ast.Record) and (record.variable, record.max_length, record.silence, record.beep) == (
        "note", 60.0, 3.0, False)
    assert isinstance(vm1, ast.Voicemail) and vm1.greeting is None and not vm1.review
    assert isinstance(vm2, ast.Voicemail) and isinstance(vm2.mailbox, ast.Var) and vm2.greeting == "busy" and vm2.review
    assert isinstance(vma1, ast.VoicemailAccess) and vma1.mailbox is None
    assert isinstance(vma2, ast.VoicemailAccess) and isinstance(vma2.mailbox, ast.Num)
    assert isinstance(hangup, ast.Hangup)


def test_transfer_forms() -> None:
    stmts = body(
        'transfer to 300 for 20s music "moh/" by refer else voicemail 300\n'
        'transfer to +41791234567 else -> s\n'
        'transfer to {ext}\n'
        '    busy, no answer -> voicemail 300\n'
        '    unavailable -> transfer to 100\n'
        '        else -> hangup\n'
        '    failed -> say "Sorry."\n'
        '    answered -> hangup\n'
        'transfer to sales else hangup'
    )
    t1, t2, t3, t4 = stmts
    assert isinstance(t1, ast.Transfer) and (t1.ring_for, t1.refer) == (20.0, True)
    assert t1.music is not None and t1.music.text == "moh/"
    assert [b.outcomes for b in t1.branches] == [("else",)] and isinstance(t1.branches[0].target, ast.Voicemail)
    assert isinstance(t2, ast.Transfer) and isinstance(t2.target, ast.Num) and t2.target.text == "+41791234567"
    assert isinstance(t3, ast.Transfer) and isinstance(t3.target, ast.Var)
    assert [b.outcomes for b in t3.branches] == [("busy", "no_answer"), ("unavailable",), ("failed",), ("answered",)]
    nested = t3.branches[1].target
    assert isinstance(nested, ast.Transfer) and [b.outcomes for b in nested.branches] == [("else",)]
    assert isinstance(t4, ast.Transfer) and isinstance(t4.target, ast.GroupRef) and t4.target.name == "sales"


def test_transfer_to_several_targets() -> None:
    """`transfer to A, B together|in turn`: the targets after the first and the mode, as a ring line has them"""
    t1, t2, t3, t4 = body(
        'transfer to 10, 11 together for 20s else hangup\n'
        'transfer to 10, {ext}, "+41791234567" in turn for 15s each\n'
        '    else -> hangup\n'
        'transfer to 10, 11 else hangup\n'
        'transfer to 10 else hangup'
    )
    assert isinstance(t1, ast.Transfer) and [v.text for v in t1.targets() if isinstance(v, ast.Num)] == ["10", "11"]
    assert (t1.mode, t1.ring_for) == ("together", 20.0)
    assert isinstance(t2, ast.Transfer) and (t2.mode, t2.ring_for) == ("in_turn", 15.0)
    assert [type(v).__name__ for v in t2.targets()] == ["Num", "Var", "Str"]
    assert [b.outcomes for b in t2.branches] == [("else",)]
    assert isinstance(t3, ast.Transfer) and t3.mode is None and len(t3.also) == 1  # the checker asks for a mode
    assert isinstance(t4, ast.Transfer) and (t4.also, t4.mode) == ((), None)


def test_directory_options() -> None:
    (d1, d2, d3) = body(
        "directory staff\n"
        "directory staff by keys by first name no confirm\n"
        "directory staff by speech by either name\n"
        "    selected -> hangup\n"
        "    not found, operator -> s\n"
    )
    assert isinstance(d1, ast.Directory) and (d1.by_speech, d1.by_keys, d1.match, d1.confirm) == (True, True, "last", True)
    assert isinstance(d2, ast.Directory) and (d2.by_speech, d2.by_keys, d2.match, d2.confirm) == (False, True, "first", False)
    assert isinstance(d3, ast.Directory) and (d3.by_speech, d3.by_keys, d3.match) == (True, False, "either")
    assert [b.outcomes for b in d3.branches] == [("selected",), ("not_found", "operator")]


def test_voicemail_no_temporary() -> None:
    """`no temporary`: the owner's temporary greeting does not take precedence in this step"""
    v1, v2, v3 = body("voicemail 300 busy no temporary review\nvoicemail {box} no temporary\nvoicemail 300 busy")
    assert isinstance(v1, ast.Voicemail) and (v1.greeting, v1.temporary, v1.review) == ("busy", False, True)
    assert isinstance(v2, ast.Voicemail) and (v2.greeting, v2.temporary) == (None, False)
    assert isinstance(v3, ast.Voicemail) and v3.temporary


def test_directory_keypad_key() -> None:
    """`press K for keypad`: any key, `#` too (not a comment there), before or after other options"""
    d1, d2, d3 = body(
        "directory staff press 9 for keypad\n"
        "directory staff by speech by keys press # for keypad   # a comment\n"
        "directory staff\n"
    )
    assert isinstance(d1, ast.Directory) and d1.keypad_key == "9"
    assert isinstance(d2, ast.Directory) and (d2.keypad_key, d2.by_speech, d2.by_keys) == ("#", True, True)
    assert isinstance(d3, ast.Directory) and d3.keypad_key == ""


def test_menu() -> None:
    menu = one(
        "menu welcome:\n"
        '    say "Welcome."\n'
        '    ask "Press 1."\n'
        '    ask play "menu.wav" no barge-in\n'
        "    wait 6s, retry 3 times\n"
        "    1 -> sales\n"
        '    9 or "operator" -> transfer to 100 else hangup\n'
        '    "sales" or "buy" -> sales\n'
        "    # -> support\n"
        "    * or A -> hangup   # star or A\n"
        "    speech -> directory staff\n"
        '    invalid -> say "Sorry."\n'
        "    no input -> hangup\n"
        "    too many invalid, too many no input -> hangup\n"
        "    exhausted -> hangup\n"
    )
    assert isinstance(menu, ast.Menu)
    assert [type(p).__name__ for p in menu.prompts] == ["Say"]
    assert [type(a.prompt).__name__ for a in menu.asks] == ["Say", "Play"]
    assert not menu.asks[1].prompt.barge_in
    assert [(w.timeout, w.tries) for w in menu.waits] == [(6.0, 3)]
    choices = [[(c.key, c.phrase, c.any_speech) for c in o.choices] for o in menu.options]
    assert choices == [
        [("1", "", False)],
        [("9", "", False), ("", "operator", False)],
        [("", "sales", False), ("", "buy", False)],
        [("#", "", False)],
        [("*", "", False), ("A", "", False)],
        [("", "", True)],
    ]
    assert [e.events for e in menu.events] == [
        ("invalid",), ("no_input",), ("too_many_invalid", "too_many_no_input"), ("exhausted",)]


def test_collect() -> None:
    collect = one(
        "collect account:\n"
        '    ask "Enter your account number, then press hash."\n'
        "    digits 6-10, end #\n"
        "    wait 8s, between 3s, retry 2 times\n"
        "    into acct\n"
        "    then -> lookup\n"
        '    invalid -> say "Too short."\n'
        "    exhausted -> hangup\n"
    )
    assert isinstance(collect, ast.Collect)
    assert collect.variable == "acct"
    assert [(d.low, d.high, d.end_key) for d in collect.digits] == [(6, 10, "#")]
    assert [(w.timeout, w.between, w.tries) for w in collect.waits] == [(8.0, 3.0, 2)]
    assert [t for t in collect.then if isinstance(t, ast.Goto)][0].step == "lookup"
    fixed = one("collect pin:\n    digits 4\n    end *\n    retry 5 times\n    then -> x\n")
    assert isinstance(fixed, ast.Collect) and fixed.variable == "pin"
    assert [(d.low, d.high) for d in fixed.digits] == [(4, 4)] and fixed.end_keys[0][0] == "*"
    assert fixed.waits[0].tries == 5


def test_group_and_sub() -> None:
    group, sub = parse(
        "group sales:\n"
        "    ring 201, 202, 203 together for 25s\n"
        "    then ring 204, {backup} in turn for 15s each\n"
        "    then ring +41791234567 for 20s\n"
        '    music "moh/"\n'
        "    by refer\n"
        "    no answer -> voicemail 200\n"
        "    else -> hangup\n"
        "sub leave(box, note):\n"
        '    say "Leave a message."\n'
        "    voicemail {box}\n"
    )
    assert isinstance(group, ast.Group)
    rings = [([getattr(m, "text", getattr(m, "name", "")) for m in r.members], r.mode, r.timeout) for r in group.rings]
    assert rings == [(["201", "202", "203"], "together", 25.0), (["204", "backup"], "in_turn", 15.0),
                     (["+41791234567"], "together", 20.0)]
    assert group.music is not None and group.refer
    assert [b.outcomes for b in group.branches] == [("no_answer",), ("else",)]
    assert isinstance(sub, ast.Sub) and sub.params == ("box", "note") and len(sub.body) == 2


def test_comments_blank_lines_and_crlf() -> None:
    text = "# header\r\n\r\nnumber default -> s   # entry\r\n\r\ns:   # a step\r\n    # only a comment\r\n\r\n    hangup\r\n# trailing"
    items = parse(text)
    assert [type(i).__name__ for i in items] == ["NumberEntry", "Step"]


def test_keywords_are_reserved_only_where_they_fit() -> None:
    items = parse("operator:\n    -> busy\nbusy:\n    hangup\n")
    assert [i.name for i in items if isinstance(i, ast.Step)] == ["operator", "busy"]


def test_positions_point_at_the_source() -> None:
    flow = parse_file(DATA / "full.ivr")
    menu = next(i for i in flow.items if isinstance(i, ast.Menu))
    assert (menu.pos.file, menu.pos.line, menu.pos.column) == (str(DATA / "full.ivr"), 34, 1)
    assert (menu.options[0].pos.line, menu.options[0].pos.column) == (38, 5)
    assert [o.pos.line for o in menu.options][-1] == 45


# --------------------------------------------------------------------------- friendly syntax errors


def test_missing_colon_after_step_name() -> None:
    assert syntax_error('welcome\n    say "hi"\n') == (
        "t.ivr:1:8: error: missing ':' after the step name 'welcome'\n"
        "    welcome\n"
        "           ^\n"
        "  hint: a step starts with its name and a colon, e.g. `welcome:`"
    )
    assert "missing ':' after the step name 'main'" in syntax_error("menu main\n    1 -> x\n")


def test_bad_indentation() -> None:
    assert syntax_error('welcome:\n    say "hi"\n  say "x"\n') == (
        "t.ivr:3:3: error: bad indentation: this line does not line up with any enclosing block\n"
        '      say "x"\n'
        "      ^\n"
        "  hint: indent the statements of a block by the same number of spaces"
    )


def test_unexpected_indentation() -> None:
    assert syntax_error('welcome:\n    say "hi"\n        say "x"\n').startswith("t.ivr:3:9: error: unexpected indentation\n")


def test_tab_in_indentation() -> None:
    assert syntax_error('s:\n\tsay "x"\n').startswith("t.ivr:2:1: error: tab in indentation\n")


def test_unterminated_string() -> None:
    assert syntax_error('welcome:\n    say "hi\n') == (
        "t.ivr:2:9: error: unterminated string\n"
        '        say "hi\n'
        "            ^\n"
        '  hint: close the string with " on the same line'
    )


def test_duration_without_unit() -> None:
    assert syntax_error("menu m:\n    wait 6\n    1 -> x\n").startswith(
        "t.ivr:2:10: error: a duration needs a unit: write 6s, 6ms or 6m\n")
    assert "a duration needs a unit: write 30s, 30ms or 30m" in syntax_error("s:\n    hold for 30\n")


def test_missing_arrow() -> None:
    assert syntax_error("menu m:\n    1 sales\n") == (
        "t.ivr:2:7: error: missing '->' before 'sales'\n"
        "        1 sales\n"
        "          ^\n"
        "  hint: write `... -> TARGET`, e.g. `1 -> sales`"
    )
    assert "t.ivr:2:24: error: missing '->' before 'x'" in syntax_error('s:\n    when caller == "1" x\n')
    assert "t.ivr:1:12: error: missing '->' before 'start'" in syntax_error("number 100 start\n")
    assert "error: missing '->' and a target at the end of the line" in syntax_error("menu m:\n    1\n")


def test_unknown_keyword_with_did_you_mean() -> None:
    assert syntax_error('s:\n    sya "hi"\n').startswith("t.ivr:2:5: error: unknown keyword 'sya'; did you mean 'say'?\n")
    assert syntax_error("timezon Europe/Zurich\n").startswith(
        "t.ivr:1:1: error: unknown keyword 'timezon'; did you mean 'timezone'?\n")
    assert "unknown keyword 'bussy'; did you mean 'busy'?" in syntax_error(
        "s:\n    transfer to 100\n        bussy -> hangup\n")


def test_empty_block_names_lower_case_and_keywords() -> None:
    assert syntax_error("s:\nt:\n    hangup\n").startswith("t.ivr:1:3: error: expected an indented block after this line\n")
    assert syntax_error("s:\n").startswith("t.ivr:1:3: error: expected an indented block after this line\n")
    assert syntax_error('Welcome:\n    say "x"\n').startswith("t.ivr:1:1: error: names are lower-case: 'Welcome'\n")
    assert syntax_error("menu:\n    hangup\n").startswith("t.ivr:1:5: error: 'menu' is a keyword and cannot name a step\n")


def test_messages_never_show_lark_token_names() -> None:
    bad = [
        "s:\n    transfer to\n", 's:\n    say "x" @\n', "number\n", "hours h:\n    mon 8-12\n",
        "s:\n    when x ==\n", "group g:\n    ring 201\n", "collect c:\n    digits x\n", "s:\n    -> \n",
    ]
    for text in bad:
        message = syntax_error(text)
        for raw in ("_NL", "RARROW", "__ANON", "_INDENT", "_DEDENT", "$END", "COLON", "NAME", "STRING"):
            assert raw not in message, (text, message)


def test_nesting_is_bounded() -> None:
    chain = "s:\n    transfer to 1" + " else transfer to 1" * 60 + " else hangup\n"
    assert syntax_error(chain).startswith("t.ivr:2:955: error: nested more than 100 levels deep\n")
    nots = "s:\n    when " + "not " * 3000 + 'caller == "1" -> s\n'
    assert syntax_error(nots).startswith("t.ivr:2:1: error: nested more than 100 levels deep\n")
    fine = "s:\n    transfer to 1" + " else transfer to 1" * 40 + " else hangup\n"
    assert parse_text(fine, "t.ivr").items


def test_keywords_out_of_place_say_where_they_belong() -> None:
    assert syntax_error('s:\n    ask "x"\n').startswith(
        "t.ivr:2:5: error: 'ask' cannot be used in a step\n        ask \"x\"\n        ^\n"
        "  hint: a step has statements: say, play, set, when, otherwise, ->, call, transfer, voicemail, hangup ...")
    assert "error: 'hangup' cannot be used in a menu" in syntax_error("menu m:\n    hangup\n")
    assert "actions go after `->`" in syntax_error("menu m:\n    hangup\n")
    assert "error: 'say' cannot be used in a group" in syntax_error('group g:\n    say "x"\n')
    assert "t.ivr:3:9: error: 'hangup' cannot be used in an outcome block" in syntax_error(
        "s:\n    transfer to 1\n        hangup\n")
    assert "t.ivr:2:5: error: a line cannot start with '1' here" in syntax_error("s:\n    1 -> x\n")
    assert "t.ivr:2:20: error: unexpected 'opened'; expected open, closed, on or off" in syntax_error(
        "s:\n    when office is opened -> x\n")


def test_line_ends_and_bom(tmp_path: Path) -> None:
    for text in ("number default -> s\rs:\r    hangup\r", "\ufeffnumber default -> s\ns:\n    hangup\n"):
        assert [type(i).__name__ for i in parse_text(text, "t.ivr").items] == ["NumberEntry", "Step"]
    path = tmp_path / "bom.ivr"
    path.write_bytes("number default -> s\ns:\n    hangup\n".encode("utf-8-sig"))
    assert len(parse_file(path).items) == 2


def test_flows_parsed_from_several_threads_at_once_parse_as_alone() -> None:
    """The indenter's stack lives on the one parser: parses in threads must not share it."""
    from concurrent.futures import ThreadPoolExecutor
    from pathlib import Path

    text = (Path(__file__).parents[2] / "flows" / "acme.ivr").read_text(encoding="utf-8")
    alone = parse_text(text, "acme.ivr")
    with ThreadPoolExecutor(4) as pool:
        results = list(pool.map(lambda _: parse_text(text, "acme.ivr"), range(40)))
    assert all(r == alone for r in results)
