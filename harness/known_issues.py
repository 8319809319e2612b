"""Known issues: the waivers a CI gate applies to results it already knows about.

A known-issues file (`known-issues.yaml`) is a YAML list of entries:

    - title: "KASAN: slab-out-of-bounds Write in watch_queue_set_filter"
      reason: fixed upstream by 2ed147f015, not yet backported
      link: https://syzkaller.appspot.com/bug?extid=...
      expires: 2027-03-31          # optional: from this day on the entry no longer waives
      kernel: "git:"               # optional: only results whose kernel identity contains it
    - test: "guest-tests/test_loss.py::*"
      scenario: functional-kasan   # optional: only in this scenario (a glob too)
      reason: loss records are late under KASAN
      link: https://lore.kernel.org/...

Matching:

- `title:` is a Python regex that must match a report title in full (`re.fullmatch`): syzbot
  titles are specific and a substring search would let `WARNING` waive every warning. Write
  `.*` where you mean "anything". Titles are matched as wqh writes them, numbers normalized
  (`LINE`, `NUM`, `ADDR`); a report's alternative titles match too, as syzbot dedups by them.
  A result is waived by title entries only when it has reports and **every** report's title is
  matched by one of them: a crash whose reports are only partly known stays a failure, and its
  message says which reports were known and which were not.
- `test:` is a test id as results.json has it, or a glob of ids: `*` and `?` are wildcards,
  everything else is literal (`[...]` too: `test_x[1-2]` is pytest's parametrized id). Such an entry waives whatever its tests did wrong: fail, crash, hang, timeout, skip,
  infra-error, xpass, and a flaky result (which fails only under --strict).
- `scenario:` and `kernel:` narrow an entry; `title:` and `test:` together need both.
- `link:` is required: a waiver nobody can trace back to a bug (a syzbot dashboard entry, a
  lore thread, a bugzilla) outlives its bug. It must be an http(s) URL.
- `expires:` is a date, YYYY-MM-DD: on that day and after it the entry waives nothing and is
  reported as expired ("expired on DATE: reason"), with the results it would have waived.

`KnownIssues.apply` recomputes the waivers of every result that fails (ignoring any waiver it
already has, e.g. from a shard's own run): applying a file twice, or to merged shards, gives
the same waivers, and only this file's. Results that are as expected are never touched (reports
owned by boot or teardown in a passing run are not the gate's business).

Loading validates the whole file on its YAML node tree, like a scenario: every error names
file:line, the key and a fix, all errors of the file at once (exit 3).
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import re
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import urlsplit

import yaml

from harness.errors import InputError, Problems
from harness.results import Outcome, TestResult
from harness.scenario import _Ctx, _kind

KEYS = {"title": "", "test": "", "scenario": "", "reason": "", "link": "", "expires": "",
        "kernel": ""}
_PARTLY = "known issues cover only some of its reports"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")
_FILE_HINT = "a known-issues file is a YAML list of entries with title: or test:, reason: and link:"


@dataclass
class KnownIssue:
    reason: str
    link: str
    title: str | None = None  # the regex as written
    test: str | None = None
    scenario: str | None = None
    kernel: str | None = None
    expires: dt.date | None = None
    file: str = ""
    line: int = 0
    pattern: re.Pattern | None = field(default=None, repr=False, compare=False)

    @property
    def where(self) -> str:
        return f"{self.file}:{self.line}"

    @property
    def waiver(self) -> str:
        """What TestResult.waived says: 'reason (link)'."""
        return f"{self.reason} ({self.link})"

    def describe(self) -> str:
        parts = []
        if self.title is not None:
            parts.append(f"title {self.title!r}")
        if self.test is not None:
            parts.append(f"test {self.test!r}")
        if self.scenario is not None:
            parts.append(f"scenario {self.scenario!r}")
        if self.kernel is not None:
            parts.append(f"kernel *{self.kernel}*")
        return ", ".join(parts)

    def expired(self, today: dt.date) -> bool:
        return self.expires is not None and today >= self.expires

    def applies_to(self, r: TestResult) -> bool:
        """Scenario, kernel and test of the entry (not its title) fit the result."""
        if self.scenario is not None and not _glob(r.scenario, self.scenario):
            return False
        if self.kernel is not None and self.kernel not in (r.kernel or ""):
            return False
        if self.test is not None and not _glob(r.test, self.test):
            return False
        return True

    def matches_title(self, rep) -> bool:
        titles = [_get(rep, "title") or ""] + list(_get(rep, "alt_titles") or [])
        return any(self.pattern.fullmatch(t) for t in titles)

    def to_json(self) -> dict:
        return {"title": self.title, "test": self.test, "scenario": self.scenario,
                "kernel": self.kernel, "reason": self.reason, "link": self.link,
                "expires": self.expires.isoformat() if self.expires else None,
                "where": self.where}


def _glob(value: str, pattern: str) -> bool:
    """`*` and `?` are wildcards; everything else is literal, `[...]` included (pytest's
    parameter ids: `test_x[1-2]` is that test, not a character class)."""
    if value == pattern:
        return True
    rx = _GLOBS.get(pattern)
    if rx is None:
        rx = _GLOBS[pattern] = re.compile("".join(
            ".*" if c == "*" else "." if c == "?" else re.escape(c) for c in pattern), re.S)
    return rx.fullmatch(value) is not None


_GLOBS: dict[str, re.Pattern] = {}


def _get(rep, name):
    return rep.get(name) if isinstance(rep, dict) else getattr(rep, name, None)


def _failing(r: TestResult) -> bool:
    """Fails without any waiver: not as expected, or flaky (a failure under --strict)."""
    return r.outcome == Outcome.FLAKY or not dataclasses.replace(r, waived="").as_expected


@dataclass
class Applied:
    """What one KnownIssues.apply did."""

    today: dt.date
    # entry -> the results it matched: waived, or crashes of which it knows only some reports
    # (partly_known); for an expired entry, those it would have waived
    matched: list[tuple[KnownIssue, list[TestResult]]] = field(default_factory=list)
    unused: list[KnownIssue] = field(default_factory=list)  # in force, waived nothing
    expired: list[tuple[KnownIssue, list[TestResult]]] = field(default_factory=list)
    waived: list[TestResult] = field(default_factory=list)
    partly_known: list[TestResult] = field(default_factory=list)  # crashes left failing

    def warnings(self) -> list[str]:
        out = []
        for e, would in self.expired:
            w = f"{e.where}: expired on {e.expires.isoformat()}: {e.reason}"
            if would:
                w += f" (it would have waived {len(would)} result{'s' * (len(would) != 1)})"
            out.append(w + "; renew 'expires:' or remove the entry")
        for e in self.unused:
            out.append(f"{e.where}: known issue matched nothing ({e.describe()}): {e.reason}")
        for r in self.partly_known:
            out.append(f"{r.scenario}: {r.test}: only some of its reports are known issues: "
                       f"still a failure")
        return out

    def text(self) -> str:
        lines = [f"known issues: {len(self.waived)} result{'s' * (len(self.waived) != 1)} waived "
                 f"by {len(self.matched)} entr{'ies' if len(self.matched) != 1 else 'y'}, "
                 f"{len(self.unused)} unused, {len(self.expired)} expired"]
        for e, rs in self.matched:
            lines.append(f"  {e.where}: {e.describe()}: {len(rs)} matched: {e.reason}")
        lines += [f"  warning: {w}" for w in self.warnings()]
        return "\n".join(lines)

    def to_json(self) -> dict:
        def ids(rs):
            return [{"scenario": r.scenario, "test": r.test, "kernel": r.kernel} for r in rs]
        return {
            "today": self.today.isoformat(),
            "matched": [dict(e.to_json(), results=ids(rs)) for e, rs in self.matched],
            "unused": [e.to_json() for e in self.unused],
            "expired": [dict(e.to_json(), would_waive=ids(rs)) for e, rs in self.expired],
            "waived": ids(self.waived),
            "partly_known": ids(self.partly_known),
        }


@dataclass
class KnownIssues:
    entries: list[KnownIssue]
    file: str = ""

    def apply(self, results: list[TestResult], today: dt.date) -> Applied:
        """Set TestResult.waived on the failing results an entry in force matches; clear it on
        the failing ones none matches. Returns what matched, what did not, what expired."""
        live = [e for e in self.entries if not e.expired(today)]
        dead = [e for e in self.entries if e.expired(today)]
        used: dict[int, list[TestResult]] = {id(e): [] for e in self.entries}
        out = Applied(today)
        for r in results:
            if not _failing(r):
                continue
            r.waived = ""
            if _PARTLY in (r.message or ""):  # from an earlier apply
                r.message = "\n".join(ln for ln in r.message.splitlines()
                                      if not ln.startswith(_PARTLY))
            hit = _match(live, r)
            if hit is not None:
                entries, known, unknown = hit
                for e in entries:
                    used[id(e)].append(r)
                if not unknown:
                    r.waived = "; ".join(dict.fromkeys(e.waiver for e in entries))
                    out.waived.append(r)
                else:
                    note = (f"{_PARTLY}: {'; '.join(known)}; "
                            f"not known: {'; '.join(unknown)}; still a failure")
                    r.message = (r.message + "\n" if r.message else "") + note
                    out.partly_known.append(r)
            # What the expired entries would have waived, to say so with their warning.
            for e in dead:
                hit = _match([e], r)
                if hit is not None and not hit[2]:
                    used[id(e)].append(r)
        for e in live:
            if used[id(e)]:
                out.matched.append((e, used[id(e)]))
            else:
                out.unused.append(e)
        out.expired = [(e, used[id(e)]) for e in dead]
        return out


def _match(entries: list[KnownIssue], r: TestResult):
    """None when no entry matches; else (entries, known, unknown): the entries that matched,
    and with title entries the reports they know and those they do not (waived when none)."""
    fit = [e for e in entries if e.applies_to(r)]
    by_test = [e for e in fit if e.title is None]
    if by_test:
        return [by_test[0]], [], []
    titled = [e for e in fit if e.title is not None]
    reps = list(r.reports or [])
    if not titled or not reps:
        return None
    used, known, unknown = [], [], []
    for rep in reps:
        e = next((e for e in titled if e.matches_title(rep)), None)
        if e is None:
            unknown.append(_get(rep, "title") or "?")
        else:
            known.append(f"{_get(rep, 'title')} ({e.where})")
            if e not in used:
                used.append(e)
    if not known:
        return None
    return used, known, unknown


# --- loading -------------------------------------------------------------------------------


def _string(ctx: _Ctx, m: dict, name: str, key: str, hint: str) -> str | None:
    if name not in m:
        return None
    node = m[name][1]
    value = ctx.scalar(node, key, str)
    if not value.strip():
        raise ctx.fail(node, key, "empty value", hint=hint)
    return value


def _entry(ctx: _Ctx, probs: Problems, node: yaml.Node, key: str) -> KnownIssue | None:
    m = ctx.mapping(node, key, KEYS)
    line = node.start_mark.line + 1
    vals: dict = {}
    checks = {
        "title": "a regex matching the whole report title, e.g. 'KASAN: .* in watch_queue_set_filter'",
        "test": "a test id or glob, e.g. guest-tests/test_loss.py::*",
        "scenario": "a scenario name or glob, e.g. functional-kasan",
        "reason": "say in a few words why this is waived",
        "link": "the bug's URL: syzbot dashboard, lore thread or bugzilla",
        "kernel": "a part of the kernel identity, e.g. 'debian:' or 'git:1a2b3c'",
    }
    for name, hint in checks.items():
        with probs.check():
            vals[name] = _string(ctx, m, name, f"{key}.{name}", hint)
    with probs.check():
        if vals.get("title") is not None:
            try:
                vals["pattern"] = re.compile(vals["title"])
            except re.error as e:
                at = f" at position {e.pos}" if e.pos is not None else ""
                vals["title"] = None
                raise ctx.fail(m["title"][1], f"{key}.title",
                               f"bad regex {m['title'][1].value!r}: {e.msg}{at}",
                               hint="a Python regex matching the whole title; escape a literal "
                                    "( ) [ ] . * + ? | with a backslash (in YAML single quotes: "
                                    "'in f\\(\\)')") from None
    with probs.check():
        t = vals.get("test")
        if t is not None and not t.strip("*?/:"):
            raise ctx.fail(m["test"][1], f"{key}.test", f"{t!r} would waive every test",
                           hint="name the tests: a test id or a glob such as "
                                "guest-tests/test_loss.py::*")
    with probs.check():
        if "link" in m and vals.get("link") is not None:
            u = urlsplit(vals["link"].strip())
            if u.scheme not in ("http", "https") or not u.netloc or " " in vals["link"].strip():
                raise ctx.fail(m["link"][1], f"{key}.link",
                               f"{vals['link']!r} is not an http(s) URL", hint=checks["link"])
    with probs.check():
        if "expires" in m:
            vals["expires"] = _date(ctx, m["expires"][1], f"{key}.expires")
    for name in ("reason", "link"):
        with probs.check():
            if name not in m:
                raise ctx.fail(node, f"{key}.{name}", f"missing key '{name}'",
                               hint=f"add {name}: ({checks[name]})")
    with probs.check():
        if "title" not in m and "test" not in m:
            raise ctx.fail(node, key, "the entry names neither 'title' nor 'test': it would "
                                      "match nothing",
                           hint="add title: (a report title regex) or test: (a test id or glob)")
    if probs:
        return None
    return KnownIssue(reason=vals["reason"], link=vals["link"].strip(), title=vals["title"],
                      test=vals["test"], scenario=vals["scenario"], kernel=vals["kernel"],
                      expires=vals.get("expires"), file=str(ctx.file), line=line,
                      pattern=vals.get("pattern"))


def _date(ctx: _Ctx, node: yaml.Node, key: str) -> dt.date:
    hint = "write the date as YYYY-MM-DD, e.g. 2027-01-31"
    if not isinstance(node, yaml.ScalarNode):
        raise ctx.fail(node, key, f"expected a date, got {_kind(node)}", hint=hint)
    text = node.value.strip()
    if not _DATE.match(text):
        raise ctx.fail(node, key, f"{node.value!r} is not a date (YYYY-MM-DD)", hint=hint)
    try:
        return dt.date.fromisoformat(text)
    except ValueError as e:
        raise ctx.fail(node, key, f"{text} is not a date: {e}", hint=hint) from None


def load(path) -> KnownIssues:
    """A known-issues file, validated; every error of the file together (InputErrors, exit 3)."""
    from harness import validate

    file = Path(path)
    try:
        text = validate.read_text(file, "known-issues file", key="--known-issues", hint=_FILE_HINT)
    except OSError as e:
        raise InputError(f"cannot read known-issues file: {e.strerror}", file=str(file),
                         key="--known-issues", hint=_FILE_HINT) from None
    try:
        root = yaml.compose(text)
    except yaml.YAMLError as e:
        mark = getattr(e, "problem_mark", None)
        problem = getattr(e, "problem", None) or str(e)
        raise InputError(f"invalid YAML: {problem}", file=str(file),
                         line=mark.line + 1 if mark else 0,
                         hint="fix the YAML syntax (indentation, quotes, colons)") from None
    except RecursionError:
        raise InputError("invalid YAML: nested too deeply", file=str(file), line=1,
                         hint=_FILE_HINT) from None
    if root is None:  # an empty file (or only comments): no known issues
        return KnownIssues([], str(file))
    ctx = _Ctx(file)
    if not isinstance(root, yaml.SequenceNode):
        raise ctx.fail(root, "", f"expected a list of entries, got {_kind(root)}",
                       hint="start each entry with '- ' (" + _FILE_HINT + ")")
    nodes = list(root.value)
    probs = Problems()
    entries: list[KnownIssue] = []
    for i, n in enumerate(nodes):
        p = Problems()
        with p.check():
            e = _entry(ctx, p, n, f"[{i}]")
            if e is not None:
                entries.append(e)
        for err in p.errors:
            probs.add(err)
    probs.raise_if_any()
    return KnownIssues(entries, str(file))
