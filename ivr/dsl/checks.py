"""What ``ivr check`` finds in a flow itself: every mistake it can be rejected for before the first call.

Two passes.  :func:`check_items` reads the AST of all files of a flow: names
(unknown and duplicate steps, subs, groups, directories, hours, switches,
variables) with did-you-mean suggestions, menus (keys bound twice, no
options), collects, outcome coverage of transfers/groups/directories, settings
(time zone), numbers bound twice, and prompt paths (which must stay inside the
prompt folders).  :func:`check_program` walks the compiled state table: loops
that never wait for the caller, menus whose every option comes back to them,
and steps never reached.

Nothing here knows the deployment: whether a prompt file exists in the prompt
folders, an extension or mailbox is defined, or a trunk allows a number is
checked by :mod:`ivr.runtime.deployment`, which walks the places this module
names (:func:`prompt_paths`, :func:`dialled`).

Every message is part of the interface: tests assert their exact text.
"""

from __future__ import annotations

import difflib
import os
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

from ivr.dsl import ast, schedule
from ivr.dsl.compiler import (
    BUILTIN_VARIABLES,
    DEFAULT_RING_TIMEOUT,
    DIRECTORY_VARIABLES,
    ZONE_HINT,
    CallOp,
    CollectWaitOp,
    ConferenceOp,
    DirectoryOp,
    DrainOp,
    FinishOp,
    HoldOp,
    MenuWaitOp,
    Op,
    Program,
    PromptOp,
    ReturnOp,
    Settings,
    TransferOp,
    VoicemailAccessOp,
    VoicemailOp,
)
from ivr.dsl.errors import Diagnostic, SourcePos

TRANSFER_OUTCOMES = ("busy", "no_answer", "unavailable", "failed")  # answered has a default: the bridge
ALL_TRANSFER_OUTCOMES = ("answered", *TRANSFER_OUTCOMES)
DIRECTORY_OUTCOMES = ("not_found", "operator")  # selected has a default: connect the person
ALL_DIRECTORY_OUTCOMES = ("selected", *DIRECTORY_OUTCOMES)


def _spoken(outcome: str) -> str:
    return outcome.replace("_", " ")


def did_you_mean(name: str, choices: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, sorted(set(choices)), n=1, cutoff=0.6)
    return f"; did you mean '{close[0]}'?" if close else ""


def _error(message: str, pos: SourcePos, hint: str = "") -> Diagnostic:
    return Diagnostic("error", message, pos, hint)


def _warning(message: str, pos: SourcePos, hint: str = "") -> Diagnostic:
    return Diagnostic("warning", message, pos, hint)


# --------------------------------------------------------------------------- walking the AST


def walk_targets(stmts: Iterable[ast.Stmt | ast.Target]) -> Iterator[ast.Stmt | ast.Target]:
    """Every statement and inline target, depth first (outcome branches included)."""
    for stmt in stmts:
        yield stmt
        if isinstance(stmt, ast.When | ast.Otherwise):
            yield from walk_targets([stmt.target])
        elif isinstance(stmt, ast.Transfer | ast.Directory):
            yield from walk_targets(b.target for b in stmt.branches)


def block_nodes(block: ast.Block) -> Iterator[ast.Stmt | ast.Target]:
    """Every statement and target of a step, menu, collect, group or sub."""
    if isinstance(block, ast.Step | ast.Sub):
        yield from walk_targets(block.body)
    elif isinstance(block, ast.Menu):
        yield from walk_targets(block.prompts)
        yield from walk_targets(a.prompt for a in block.asks)
        yield from walk_targets(o.target for o in block.options)
        yield from walk_targets(e.target for e in block.events)
    elif isinstance(block, ast.Collect):
        yield from walk_targets(block.prompts)
        yield from walk_targets(a.prompt for a in block.asks)
        yield from walk_targets(block.then)
        yield from walk_targets(e.target for e in block.events)
    else:
        yield from walk_targets(b.target for b in block.branches)


def _cond_parts(cond: ast.Cond) -> Iterator[ast.Cond]:
    yield cond
    if isinstance(cond, ast.Not):
        yield from _cond_parts(cond.cond)
    elif isinstance(cond, ast.And | ast.Or):
        yield from _cond_parts(cond.left)
        yield from _cond_parts(cond.right)


def _cond_values(cond: ast.Cond) -> Iterator[ast.Value]:
    for part in _cond_parts(cond):
        if isinstance(part, ast.Compare | ast.StartsWith):
            yield part.left
            yield part.right
        elif isinstance(part, ast.InList):
            yield part.left
            yield from part.options


def _node_values(node: ast.Stmt | ast.Target) -> Iterator[ast.Value]:
    """Values a statement reads (variables and strings with {interpolation})."""
    if isinstance(node, ast.Say):
        yield node.text
    elif isinstance(node, ast.Play):
        yield node.path
    elif isinstance(node, ast.Set):
        yield node.value
    elif isinstance(node, ast.Call):
        yield from node.args
    elif isinstance(node, ast.Voicemail):
        yield node.mailbox
    elif isinstance(node, ast.VoicemailAccess) and node.mailbox is not None:
        yield node.mailbox
    elif isinstance(node, ast.Transfer):
        yield from (t for t in node.targets() if not isinstance(t, ast.GroupRef))
    elif isinstance(node, ast.When):
        yield from _cond_values(node.cond)
    elif isinstance(node, ast.Conference):
        yield from (pin for pin in (node.pin, node.moderator_pin) if pin is not None)


# --------------------------------------------------------------------------- the AST pass


@dataclass
class _Names:
    blocks: dict[str, ast.Block] = field(default_factory=dict)
    hours: dict[str, ast.HoursDef] = field(default_factory=dict)
    switches: dict[str, ast.SwitchDecl] = field(default_factory=dict)
    directories: dict[str, ast.DirectorySource] = field(default_factory=dict)
    variables: set[str] = field(default_factory=set)


def _kind(block: ast.Block) -> str:
    return {ast.Step: "step", ast.Menu: "menu", ast.Collect: "collect", ast.Group: "group", ast.Sub: "sub"}[type(block)]


class _Checker:
    def __init__(self, items: Sequence[ast.Item], settings: Settings) -> None:
        self.items = list(items)
        self.settings = settings
        self.out: list[Diagnostic] = []
        self.names = _Names()
        self._rooms: dict[str, ast.Conference] = {}  # room -> where it is first joined

    def run(self) -> list[Diagnostic]:
        self._declarations()
        self._settings()
        self._numbers()
        for block in self.names.blocks.values():
            self._block(block)
        for hours in self.names.hours.values():
            self._hours(hours)
        self._recursion()
        return self.out

    def _recursion(self) -> None:
        """Sub-flows that call themselves, directly or through others: every call would stack up."""
        calls: dict[str, list[ast.Call]] = {}
        for name, block in self.names.blocks.items():
            if isinstance(block, ast.Sub):
                calls[name] = [n for n in block_nodes(block) if isinstance(n, ast.Call) and n.sub in self.names.blocks]
        reported: set[str] = set()
        for start in calls:
            path = _call_cycle(start, calls)
            if path and not reported & set(path):
                reported.update(path)
                call = next(c for c in calls[path[-2]] if c.sub == path[-1])
                self.out.append(_error(f"sub-flow '{start}' calls itself: {' -> '.join(path)}", call.pos,
                                       "sub-flows cannot be recursive; use a step and `->` to repeat"))

    # -- declarations and duplicates
    def _declarations(self) -> None:
        names = self.names
        for item in self.items:
            if isinstance(item, ast.Step | ast.Menu | ast.Collect | ast.Group | ast.Sub):
                self._declare(names.blocks, item.name, item, "step")
            elif isinstance(item, ast.HoursDef):
                self._declare(names.hours, item.name, item, "hours")
            elif isinstance(item, ast.DirectorySource):
                self._declare(names.directories, item.name, item, "directory")
            elif isinstance(item, ast.SwitchDecl):
                names.switches.setdefault(item.name, item)
        names.variables.update(BUILTIN_VARIABLES)
        names.variables.update(DIRECTORY_VARIABLES)
        for block in names.blocks.values():
            if isinstance(block, ast.Collect):
                names.variables.add(block.variable)
            for node in block_nodes(block):
                if isinstance(node, ast.Set):
                    names.variables.add(node.name)
                elif isinstance(node, ast.Record):
                    names.variables.add(node.variable)

    def _declare(self, table: dict[str, Any], name: str, node: ast.Node, what: str) -> None:
        first = table.get(name)
        if first is None:
            table[name] = node
            return
        self.out.append(_error(f"duplicate {what} '{name}'", node.pos, f"'{name}' is already defined at {first.pos}"))

    def _settings(self) -> None:
        seen: dict[str, ast.Setting] = {}
        for item in self.items:
            if not isinstance(item, ast.Setting):
                continue
            first = seen.setdefault(item.key, item)
            if first is not item and first.value != item.value:
                self.out.append(_error(
                    f"{item.key.replace('_', ' ')} is set twice, to '{first.value}' and '{item.value}'",
                    item.pos, f"the first is at {first.pos}",
                ))
            if item.key == "timezone" and first is item:
                try:
                    schedule.zone(item.value)
                except schedule.ScheduleError as exc:
                    self.out.append(_error(str(exc), item.value_pos or item.pos, ZONE_HINT))
            if item.key in ("hold_music",) and first is item:
                self._prompt_path(item.value, item.pos)
        for item in self.items:
            if isinstance(item, ast.DirectorySource):
                path = Path(item.pos.file).parent / item.path
                if not path.is_file():
                    self.out.append(_warning(f"directory file not found: {item.path}", item.pos))

    def _numbers(self) -> None:
        bound: dict[str, ast.NumberEntry] = {}
        any_entry = False
        for item in self.items:
            if not isinstance(item, ast.NumberEntry):
                continue
            any_entry = True
            self._step_ref(item.step, item.step_pos or item.pos)
            for number in item.numbers:
                first = bound.setdefault(number, item)
                if first is not item:
                    self.out.append(_error(
                        f"number {number} is bound twice, to '{first.step}' and '{item.step}'",
                        item.pos, f"the first is at {first.pos}",
                    ))
        if not any_entry and self.items:
            pos = self.items[0].pos
            self.out.append(_error("the flow has no entry point", SourcePos(pos.file, 1, 1),
                                   "add `number default -> STEP` or `number +41... -> STEP`"))

    def _step_ref(self, name: str, pos: SourcePos) -> None:
        block = self.names.blocks.get(name)
        if block is None and name in self.names.hours:
            self.out.append(_error(f"'{name}' is an hours block, not a step", pos,
                                   f"branch on it: `when {name} is open -> STEP`"))
        elif block is None:
            self.out.append(_error(f"unknown step '{name}'{did_you_mean(name, self._step_names())}", pos))
        elif isinstance(block, ast.Sub):
            self.out.append(_error(f"'{name}' is a sub-flow, not a step", pos, f"use `call {name}(...)`"))

    def _step_names(self) -> list[str]:
        return [n for n, b in self.names.blocks.items() if not isinstance(b, ast.Sub)]

    # -- blocks
    def _block(self, block: ast.Block) -> None:
        params = set(block.params) if isinstance(block, ast.Sub) else set()
        for node in block_nodes(block):
            self._node(node, block, params)
        if isinstance(block, ast.Step | ast.Sub):
            self._dead_code(block.body)
        if isinstance(block, ast.Menu):
            self._menu(block)
        elif isinstance(block, ast.Collect):
            self._collect(block)
        elif isinstance(block, ast.Group):
            self._group(block)

    def _node(self, node: ast.Stmt | ast.Target, block: ast.Block, params: set[str]) -> None:
        for value in _node_values(node):
            self._value(value, params)
        if isinstance(node, ast.Goto):
            self._step_ref(node.step, node.pos)
        elif isinstance(node, ast.Call):
            self._call(node)
        elif isinstance(node, ast.Return) and not isinstance(block, ast.Sub):
            self.out.append(_error("return outside a sub-flow", node.pos, "a step ends with a jump or `hangup`"))
        elif isinstance(node, ast.When):
            self._cond(node.cond)
        elif isinstance(node, ast.Transfer):
            self._transfer(node)
        elif isinstance(node, ast.Directory):
            self._directory(node)
        elif isinstance(node, ast.Voicemail) and node.greeting == "temporary" and not node.temporary:
            self.out.append(_error("`temporary no temporary`: this voicemail asks for the temporary greeting "
                                   "and refuses it", node.pos, "keep one of the two"))
        elif isinstance(node, ast.Play):
            self._prompt_path(node.path.text, node.path.pos)
        elif isinstance(node, ast.Hold) and node.music is not None:
            self._prompt_path(node.music.text, node.music.pos)
        elif isinstance(node, ast.Conference):
            self._conference(node)

    def _conference(self, node: ast.Conference) -> None:
        for pin in (node.pin, node.moderator_pin):
            if pin is not None and not pin.variables() and not pin.text.isdigit():
                self.out.append(_error(f'conference PIN "{pin.text}" is not all digits', pin.pos,
                                       'callers type the PIN on the keypad: use 0-9 only, e.g. pin "4711"'))
        if node.moderator_pin is not None and node.pin is None:
            self.out.append(_error("a moderator PIN needs a PIN for the other participants", node.moderator_pin.pos,
                                   f'add one: conference {node.room} pin "1234" moderator pin "{node.moderator_pin.text}"'))
        if node.pin is not None and node.moderator_pin is not None and node.pin.text == node.moderator_pin.text:
            self.out.append(_error("the moderator PIN is the same as the PIN", node.moderator_pin.pos,
                                   "give moderators a PIN of their own, or leave `moderator pin` out"))
        if node.max_participants is not None and node.max_participants < 2:
            self.out.append(_error(f"conference {node.room} has room for {node.max_participants}: "
                                   "nobody could talk to anyone", node.pos,
                                   "write max 2 or more, or leave max out for no limit"))
        if node.music is not None:
            self._prompt_path(node.music.text, node.music.pos)
        first = self._rooms.setdefault(node.room, node)
        if first is not node and replace(first, pos=node.pos) != node:
            self.out.append(_warning(
                f"conference {node.room} is joined with other settings at line {first.pos.line}", node.pos,
                "every caller of a room should get the same PIN, limit and music: write them the same way"))

    def _dead_code(self, body: Sequence[ast.Stmt]) -> None:
        for stmt, after in zip(body, body[1:], strict=False):
            ends = _ENDS_STEP.get(type(stmt))
            if ends:
                self.out.append(_warning(f"this line is never run: the step ends at the {ends} before it", after.pos))
                return

    def _value(self, value: ast.Value, params: set[str]) -> None:
        known = self.names.variables | params
        used: list[tuple[str, SourcePos]] = []
        if isinstance(value, ast.Var):
            used.append((value.name, value.pos))
        elif isinstance(value, ast.Str):
            for name in value.variables():
                # Point at the {name} inside the string (the opening quote is one column).
                offset = value.text.find("{" + name + "}") + 1
                used.append((name, SourcePos(value.pos.file, value.pos.line, value.pos.column + offset)))
        for name, pos in used:
            if name not in known:
                self.out.append(_error(f"undefined variable '{name}'{did_you_mean(name, known)}", pos,
                                       "variables come from `set`, `collect`, `record`, sub-flow parameters, "
                                       "or are caller, called, time, weekday, date"))

    def _call(self, node: ast.Call) -> None:
        sub = self.names.blocks.get(node.sub)
        if not isinstance(sub, ast.Sub):
            subs = [n for n, b in self.names.blocks.items() if isinstance(b, ast.Sub)]
            self.out.append(_error(f"unknown sub-flow '{node.sub}'{did_you_mean(node.sub, subs)}", node.pos))
            return
        if len(node.args) != len(sub.params):
            want = len(sub.params)
            self.out.append(_error(
                f"sub-flow '{sub.name}' takes {want} argument{'s' if want != 1 else ''}, not {len(node.args)}",
                node.pos, f"defined as `sub {sub.name}({', '.join(sub.params)})` at {sub.pos}",
            ))

    def _cond(self, cond: ast.Cond) -> None:
        for part in _cond_parts(cond):
            if not isinstance(part, ast.IsState):
                continue
            if part.name in self.names.hours:
                if part.state not in ("open", "closed"):
                    self.out.append(_error(f"hours '{part.name}' is open or closed, not {part.state}", part.pos))
            elif part.name in self.names.switches:
                if part.state not in ("on", "off"):
                    self.out.append(_error(f"switch '{part.name}' is on or off, not {part.state}", part.pos))
            else:
                choices = list(self.names.hours) + list(self.names.switches)
                self.out.append(_error(
                    f"unknown hours or switch '{part.name}'{did_you_mean(part.name, choices)}", part.pos,
                    "declare it with `hours NAME:` or `switch NAME`",
                ))

    # -- outcomes
    def _outcomes(self, what: str, branches: Sequence[ast.Branch], allowed: Sequence[str],
                  required: Sequence[str], pos: SourcePos, inherited: Sequence[ast.Branch] = ()) -> None:
        handled: dict[str, ast.Branch] = {}
        has_else = any("else" in b.outcomes for b in inherited)
        covered = {o for b in inherited for o in b.outcomes}
        for branch in branches:
            for outcome in branch.outcomes:
                if outcome == "else":
                    has_else = True
                    continue
                if outcome not in allowed:
                    self.out.append(_error(
                        f"'{_spoken(outcome)}' is not an outcome of {what}", branch.pos,
                        "its outcomes are " + ", ".join(_spoken(o) for o in allowed),
                    ))
                elif outcome in handled:
                    self.out.append(_error(f"outcome '{_spoken(outcome)}' is handled twice", branch.pos,
                                           f"the first is at {handled[outcome].pos}"))
                else:
                    handled[outcome] = branch
        missing = [o for o in required if o not in handled and o not in covered]
        if missing and not has_else:
            self.out.append(_error(
                f"{what} does not handle: {', '.join(_spoken(o) for o in missing)}", pos,
                "add " + ", ".join(f"`{_spoken(o)} -> ...`" for o in missing) + " or `else -> ...`",
            ))

    def _transfer(self, node: ast.Transfer) -> None:
        branches = list(node.branches)
        what = "transfer to " + ", ".join(_target_text(t) for t in node.targets())
        if node.also:
            self._several_targets(node)
        self._recorded(node, what)
        if isinstance(node.target, ast.GroupRef):
            group = self.names.blocks.get(node.target.name)
            if not isinstance(group, ast.Group):
                groups = [n for n, b in self.names.blocks.items() if isinstance(b, ast.Group)]
                if group is None:
                    self.out.append(_error(f"unknown group '{node.target.name}'{did_you_mean(node.target.name, groups)}",
                                           node.target.pos))
                else:
                    self.out.append(_error(f"'{node.target.name}' is a {_kind(group)}, not a group", node.target.pos,
                                           f"use `-> {node.target.name}` to go to it"))
                return
            # The group's own branches cover what the statement leaves out.
            self._outcomes(what, branches, ALL_TRANSFER_OUTCOMES, TRANSFER_OUTCOMES, node.pos, group.branches)
            return
        self._outcomes(what, branches, ALL_TRANSFER_OUTCOMES, TRANSFER_OUTCOMES, node.pos)

    def _recorded(self, node: ast.Transfer, what: str) -> None:
        """``record`` needs ivr in the call: a REFER (the transfer's or its group's) hands it away."""
        if not node.record:
            return
        group = self.names.blocks.get(node.target.name) if isinstance(node.target, ast.GroupRef) else None
        if node.refer or (isinstance(group, ast.Group) and group.refer):
            self.out.append(_error(
                f"{what}: a transfer by refer cannot be recorded", node.pos,
                "ivr leaves a call it hands over by REFER: drop `by refer` to record, or `record` to refer",
            ))

    def _several_targets(self, node: ast.Transfer) -> None:
        """A transfer to several targets says how to ring them, names no group and is not a REFER."""
        targets = ", ".join(_written(t) for t in node.targets())
        if isinstance(node.target, ast.GroupRef):
            self.out.append(_error(
                f"'{node.target.name}' is a group: it cannot be rung with other targets", node.target.pos,
                f"transfer to the group alone (`transfer to {node.target.name}`) or add the numbers to its ring lines",
            ))
        elif node.mode is None:
            seconds = f"{node.ring_for or DEFAULT_RING_TIMEOUT:g}s"
            self.out.append(_error(
                f"transfer to {targets}: say how to ring several targets", node.also[0].pos,
                f"`transfer to {targets} together for {seconds}` rings them all at once, "
                f"`transfer to {targets} in turn for {seconds}` one after another (each for {seconds})",
            ))
        if node.refer:
            self.out.append(_error(
                f"transfer to {targets} by refer: a REFER hands the call to one target", node.pos,
                "ring several targets without `by refer`, or refer to one",
            ))

    def _group(self, group: ast.Group) -> None:
        self._outcomes(f"group '{group.name}'", group.branches, ALL_TRANSFER_OUTCOMES, TRANSFER_OUTCOMES, group.pos)
        if not group.rings:
            self.out.append(_error(f"group '{group.name}' rings nobody", group.pos, "add `ring 201, 202 together for 20s`"))
        for ring in group.rings:
            for member in ring.members:
                self._value(member, set())

    def _directory(self, node: ast.Directory) -> None:
        if node.name not in self.names.directories:
            self.out.append(_error(
                f"unknown directory '{node.name}'{did_you_mean(node.name, self.names.directories)}", node.pos,
                f'declare it: directory {node.name} from "staff.csv"',
            ))
        self._outcomes(f"directory {node.name}", node.branches, ALL_DIRECTORY_OUTCOMES, DIRECTORY_OUTCOMES, node.pos)
        if node.keypad_key:
            self._keypad_key(node)

    def _keypad_key(self, node: ast.Directory) -> None:
        """`press K for keypad` leaves speech for the keypad: both must be on, and 0 is the operator's."""
        written = f"press {node.keypad_key} for keypad"
        if node.keypad_key == "0":
            self.out.append(_error(f"`{written}`: 0 is the operator's key in the directory", node.pos,
                                   "choose another key, like `press 9 for keypad`"))
        elif not (node.by_speech and node.by_keys):
            self.out.append(_error(
                f"`{written}` switches from speech to the keypad: directory {node.name} needs both", node.pos,
                "write `by speech by keys` (or neither: both is the default)",
            ))

    # -- menus and collect
    def _twice(self, lines: Sequence[ast.Node], what: str, where: str) -> None:
        for line in lines[1:]:
            self.out.append(_error(f"{what} is given twice in {where}", line.pos, f"the first is at {lines[0].pos}"))

    def _input_events(self, events: Sequence[ast.OnInput], where: str) -> None:
        seen: dict[str, ast.OnInput] = {}
        for line in events:
            for event in line.events:
                if event in seen:
                    self.out.append(_error(f"'{_spoken(event)}' is handled twice in {where}", line.pos,
                                           f"the first is at {seen[event].pos}"))
                seen.setdefault(event, line)

    def _menu(self, menu: ast.Menu) -> None:
        where = f"menu '{menu.name}'"
        self._twice([w for w in menu.waits if w.timeout is not None], "wait", where)
        self._input_events(menu.events, where)
        for wait in menu.waits:
            if wait.between is not None:
                self.out.append(_warning("`between` has no effect in a menu", wait.pos,
                                         "the time between digits applies to `collect`"))
        keys: dict[str, ast.Choice] = {}
        phrases: dict[str, ast.Choice] = {}
        for option in menu.options:
            for choice in option.choices:
                if choice.key:
                    if choice.key in keys:
                        self.out.append(_error(f"key {choice.key} is bound twice in {where}", choice.pos,
                                               f"the first is at {keys[choice.key].pos}"))
                    keys.setdefault(choice.key, choice)
                elif choice.phrase:
                    low = choice.phrase.lower()
                    if low in phrases:
                        self.out.append(_error(f'phrase "{choice.phrase}" is used twice in {where}', choice.pos,
                                               f"the first is at {phrases[low].pos}"))
                    phrases.setdefault(low, choice)
        if not menu.options:
            self.out.append(_error(f"{where} has no options", menu.pos, "add lines like `1 -> sales`"))

    def _collect(self, collect: ast.Collect) -> None:
        where = f"collect '{collect.name}'"
        self._twice([w for w in collect.waits if w.timeout is not None], "wait", where)
        self._twice(list(collect.digits), "digits", where)
        self._input_events(collect.events, where)
        for digits in collect.digits[:1]:
            if digits.low > digits.high:
                self.out.append(_error(f"digits {digits.low}-{digits.high}: the minimum is larger than the maximum",
                                       digits.pos))
            if digits.low < 1:
                self.out.append(_error("digits: at least 1 digit must be collected", digits.pos))
        if not collect.then:
            self.out.append(_error(f"{where} does not say where to go with the digits", collect.pos,
                                   "add `then -> STEP`"))
        if len(collect.then) > 1:
            self.out.append(_error(f"then is given twice in {where}", collect.then[1].pos))

    # -- hours and prompts
    def _hours(self, hours: ast.HoursDef) -> None:
        used = any(
            isinstance(part, ast.IsState) and part.name == hours.name
            for block in self.names.blocks.values()
            for node in block_nodes(block)
            if isinstance(node, ast.When)
            for part in _cond_parts(node.cond)
        )
        if not used:
            self.out.append(_warning(f"hours '{hours.name}' is never used", hours.pos,
                                     f"branch on it: `when {hours.name} is open -> STEP`"))
        for line in hours.lines:
            if isinstance(line, ast.SwitchLine) and line.switch not in self.names.switches:
                self.out.append(_error(
                    f"unknown switch '{line.switch}'{did_you_mean(line.switch, self.names.switches)}", line.pos,
                    f"declare it at file level: switch {line.switch}",
                ))

    def _prompt_path(self, path: str, pos: SourcePos) -> None:
        """A prompt path must stay inside the prompt folders; whether the file is there is the deployment's."""
        if not path or "{" in path or path.startswith("data:"):
            return  # decided at run time
        if os.path.isabs(path) or ".." in Path(path).parts:
            self.out.append(_error("prompt path escapes the prompt folders", pos,
                                   "write a path relative to a prompt folder, without '..'"))


def _call_cycle(start: str, calls: dict[str, list[ast.Call]]) -> list[str] | None:
    """The first chain of calls from ``start`` back to ``start`` (depth first), if any."""
    todo: list[list[str]] = [[start]]
    seen: set[str] = set()
    while todo:
        path = todo.pop()
        for call in calls.get(path[-1], []):
            if call.sub == start:
                return [*path, start]
            if call.sub not in seen:
                seen.add(call.sub)
                todo.append([*path, call.sub])
    return None


_ENDS_STEP: dict[type, str] = {
    ast.Goto: "jump",
    ast.Otherwise: "`otherwise`",
    ast.Hangup: "`hangup`",
    ast.Voicemail: "`voicemail`",
    ast.VoicemailAccess: "`voicemail access`",
    ast.Return: "`return`",
}


def _written(target: ast.Value | ast.GroupRef) -> str:
    """A target as the flow writes it (a string keeps its quotes)."""
    return f'"{target.text}"' if isinstance(target, ast.Str) else _target_text(target)


def _target_text(target: ast.Value | ast.GroupRef) -> str:
    if isinstance(target, ast.Var):
        return "{" + target.name + "}"
    if isinstance(target, ast.GroupRef):
        return f"pikett {target.name}" if target.pikett else target.name
    return target.text


def check_items(items: Sequence[ast.Item], settings: Settings) -> list[Diagnostic]:
    """Problems found in the AST of a flow's files (names, menus, outcomes, prompt paths, settings)."""
    return _Checker(items, settings).run()


def prompt_paths(items: Sequence[ast.Item]) -> Iterator[tuple[str, SourcePos, bool]]:
    """Every constant prompt path a flow plays: (path, where, whether a folder of files may do)."""
    for item in items:
        if isinstance(item, ast.Setting) and item.key == "hold_music":
            yield item.value, item.pos, True
        if not isinstance(item, ast.Step | ast.Menu | ast.Collect | ast.Group | ast.Sub):
            continue
        for node in block_nodes(item):
            if isinstance(node, ast.Play):
                yield node.path.text, node.path.pos, False
            elif isinstance(node, ast.Hold | ast.Conference) and node.music is not None:
                yield node.music.text, node.music.pos, True


# --------------------------------------------------------------------------- the state-table pass


def check_program(program: Program, items: Sequence[ast.Item], *, reachability: bool = True) -> list[Diagnostic]:
    """Problems only the compiled table shows: loops that never wait, menus without a way out,
    and (with ``reachability``) steps never reached.

    The loader runs this even on a flow with errors (their jumps compile to an error ending), so
    one run reports every problem; it leaves out reachability then, which a broken jump would
    only blur.
    """
    found = _busy_loops(program, items) + _menus_without_way_out(program, items)
    return (_unreachable(program, items) if reachability else []) + found


def _successors(program: Program, name: str) -> list[str]:
    return [t for t in program.states[name].transitions.values() if t in program.states]


def _unreachable(program: Program, items: Sequence[ast.Item]) -> list[Diagnostic]:
    seen: set[str] = set()
    todo = [s for s in program.entries.values() if s in program.states]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        todo.extend(_successors(program, name))
    # `transfer to GROUP` and `transfer to pikett GROUP` ring the group in place: it is used.
    seen |= {op.group for s in seen if isinstance(op := program.states[s].op, TransferOp) and op.group}
    out: list[Diagnostic] = []
    reported: set[str] = set()
    for item in items:
        if isinstance(item, ast.Step | ast.Menu | ast.Collect | ast.Group | ast.Sub) and item.name not in seen:
            if item.name in reported:
                continue
            reported.add(item.name)
            if isinstance(item, ast.Sub):
                out.append(_warning(f"sub-flow '{item.name}' is never called", item.pos))
            else:
                out.append(_warning(f"step '{item.name}' is never reached", item.pos,
                                    "no number, jump or option leads here"))
    return out


def _waits(program: Program, name: str) -> bool:
    """Whether a state can stop and wait for the outside world (caller, prompts, peers)."""
    op = program.states[name].op
    if isinstance(op, HoldOp):
        return bool(op.duration)
    if isinstance(op, DrainOp):
        return False  # waits only for prompts queued before it: see _busy_loops
    if isinstance(op, CallOp):
        return _sub_waits(program, op.sub)
    return bool(op.waits) or not program.states[name].transitions


def _sub_waits(program: Program, sub: str) -> bool:
    return any(s.step == sub and (s.op.waits or isinstance(s.op, CallOp)) for s in program.states.values())


def _busy_loops(program: Program, items: Sequence[ast.Item]) -> list[Diagnostic]:
    """Cycles of transient states: the call would spin without ever waiting for anything."""
    transient = {n for n in program.states if not _waits(program, n)}
    # A call that never waits has both edges: into the sub-flow (which may jump out of it)
    # and on to its continuation, where the sub-flow's `return` comes back.
    graph = {n: [t for t in _successors(program, n) if t in transient] for n in transient}
    out: list[Diagnostic] = []
    for component in _strongly_connected(graph):
        if len(component) == 1 and component[0] not in graph[component[0]]:
            continue
        ops = [program.states[n].op for n in component]
        if any(isinstance(op, PromptOp) for op in ops) and any(isinstance(op, DrainOp) for op in ops):
            continue  # each round speaks, then waits for the caller to have heard it
        steps = list(dict.fromkeys(program.states[n].step for n in sorted(component, key=_order(program))))
        first = program.states[steps[0]] if steps[0] in program.states else program.states[component[0]]
        path = " -> ".join([*steps, steps[0]])
        pos = _jump_pos(items, steps[-1], steps[0]) or first.pos
        out.append(_error(f"steps loop without waiting for the caller: {path}", pos,
                          "put a menu, a collect, `hold for ...` or a hangup in the loop"))
    return out


def _jump_pos(items: Sequence[ast.Item], source: str, target: str) -> SourcePos | None:
    """Where block ``source`` jumps to ``target`` (the jump that closes a loop), if it is written as one."""
    for item in items:
        if isinstance(item, ast.Step | ast.Menu | ast.Collect | ast.Group | ast.Sub) and item.name == source:
            jump = next((n for n in block_nodes(item) if isinstance(n, ast.Goto) and n.step == target), None)
            return jump.pos if jump else None
    return None


# A menu option reaching one of these has left the menu: the caller is somewhere else (another
# menu or collect, a transfer, the directory, voicemail) or the call ends.
_ELSEWHERE = (MenuWaitOp, CollectWaitOp, TransferOp, DirectoryOp, VoicemailOp, VoicemailAccessOp, ConferenceOp,
              FinishOp)


def _menus_without_way_out(program: Program, items: Sequence[ast.Item]) -> list[Diagnostic]:
    """Menus whose every option comes back to them: jumps to the menu itself, steps that only lead
    back, sub-flows that return, or options that only speak (warnings)."""
    out: list[Diagnostic] = []
    for name, state in program.states.items():
        op = state.op
        if not isinstance(op, MenuWaitOp) or op.menu not in program.states:
            continue
        options = [t for label, t in state.transitions.items() if label.startswith(("key:", "speech"))]
        loop = _menu_loop(program, op.menu, name)
        if options and not any(_leaves_menu(program, t, loop) for t in options):
            out.append(_warning(
                f"menu '{op.menu}' has no way out: every option comes back to the menu", state.pos,
                "send at least one option to another step, a transfer or voicemail",
            ))
    return out


def _menu_loop(program: Program, entry: str, wait: str) -> set[str]:
    """The states of a menu's own round: entering, prompts, re-prompts, up to its wait state."""
    seen = {wait}
    todo = [entry]
    while todo:
        name = todo.pop()
        if name not in seen and name in program.states:
            seen.add(name)
            todo.extend(program.states[name].transitions.values())
    return seen


def _leaves_menu(program: Program, start: str, loop: set[str]) -> bool:
    """Whether some path from an option's first state gets somewhere else before coming back."""
    seen: set[str] = set()
    todo = [start]
    while todo:
        name = todo.pop()
        if name in seen or name in loop or name not in program.states:
            continue
        seen.add(name)
        state = program.states[name]
        if isinstance(state.op, _ELSEWHERE) or _is_end(state.op, state.transitions):
            return True
        todo.extend(state.transitions.values())
    return False


def _is_end(op: Op, transitions: Mapping[str, str]) -> bool:
    return not transitions and not isinstance(op, ReturnOp)


def _order(program: Program):  # type: ignore[no-untyped-def]
    index = {name: i for i, name in enumerate(program.states)}
    return lambda n: index[n]


def _strongly_connected(graph: dict[str, list[str]]) -> list[list[str]]:
    """Tarjan's algorithm, iterative (flows can be thousands of states deep)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    result: list[list[str]] = []
    counter = 0
    for root in graph:
        if root in index:
            continue
        work: list[tuple[str, int]] = [(root, 0)]
        while work:
            node, i = work.pop()
            if i == 0:
                index[node] = low[node] = counter
                counter += 1
                stack.append(node)
                on_stack.add(node)
            edges = graph[node]
            if i < len(edges):
                work.append((node, i + 1))
                nxt = edges[i]
                if nxt not in index:
                    work.append((nxt, 0))
                elif nxt in on_stack:
                    low[node] = min(low[node], index[nxt])
                continue
            if low[node] == index[node]:
                component = []
                while True:
                    top = stack.pop()
                    on_stack.discard(top)
                    component.append(top)
                    if top == node:
                        break
                result.append(component)
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
    return result


# --------------------------------------------------------------------------- what the deployment must provide


_NUMBER = re.compile(r"\+?[0-9*#]+")


def dialled(items: Sequence[ast.Item]) -> Iterator[tuple[str, SourcePos, str]]:
    """Every constant number a flow rings, transfers to or leaves voicemail in: (number, where, what).

    ``what`` is ``ring``, ``transfer`` or ``mailbox``.  A sub-flow's parameter counts with each
    constant argument a call passes for it (``call closed("999")``), at the argument.
    """
    subs = {i.name: i for i in items if isinstance(i, ast.Sub)}
    for item in items:
        if isinstance(item, ast.Group):
            for ring in item.rings:
                for member in ring.members:
                    yield from _constant(member, member.pos, "ring", {})
        if isinstance(item, ast.Step | ast.Menu | ast.Collect | ast.Group | ast.Sub):
            yield from _dialled_in(item, {}, subs, set())


def _dialled_in(
    block: ast.Block, bound: Mapping[str, tuple[str, SourcePos]], subs: Mapping[str, ast.Sub],
    seen: set[tuple[str, tuple[tuple[str, str], ...]]],
) -> Iterator[tuple[str, SourcePos, str]]:
    """The numbers of one block, with ``bound`` (sub-flow parameter -> constant argument, where)."""
    for node in block_nodes(block):
        if isinstance(node, ast.Transfer):
            for target in node.targets():
                if not isinstance(target, ast.GroupRef):
                    yield from _constant(target, target.pos, "transfer", bound)
        elif isinstance(node, ast.Voicemail | ast.VoicemailAccess) and node.mailbox is not None:
            yield from _constant(node.mailbox, node.mailbox.pos, "mailbox", bound)
        elif isinstance(node, ast.Call) and node.sub in subs:
            sub = subs[node.sub]
            args = {p: _bound_arg(a, bound) for p, a in zip(sub.params, node.args, strict=False)}
            binding = {p: a for p, a in args.items() if a is not None}
            key = (sub.name, tuple(sorted((p, a[0]) for p, a in binding.items())))
            if binding and key not in seen:  # `seen` stops sub-flows that call each other
                seen.add(key)
                yield from _dialled_in(sub, binding, subs, seen)


def _bound_arg(value: ast.Value, bound: Mapping[str, tuple[str, SourcePos]]) -> tuple[str, SourcePos] | None:
    found = list(_constant(value, value.pos, "", bound))
    return (found[0][0], found[0][1]) if found else None


def _constant(
    value: ast.Value, pos: SourcePos, what: str, bound: Mapping[str, tuple[str, SourcePos]]
) -> Iterator[tuple[str, SourcePos, str]]:
    """The number a value stands for when it is known before the call: a literal or a bound parameter."""
    if isinstance(value, ast.Var) and value.name in bound:
        yield bound[value.name][0], bound[value.name][1], what
    elif isinstance(value, ast.Num) or (isinstance(value, ast.Str) and _NUMBER.fullmatch(value.text)):
        yield value.text, pos, what
