"""A syzbot report as a user saves it from the report page or the email: a directory.

    config        the kernel .config (the 'kernel config' link)             required
    repro.c       the C reproducer ('C reproducer')                         required
    repro.syz     the syzkaller program ('syz repro')                       optional
    log           the console log ('console output')                        optional
    title         the report's title, one line (more lines: alt titles)     optional
    report|email|*.eml|*.txt   the report email                             optional

Everything the email says that wqh uses is read from it: the title (`Subject: [syzbot] ...`
or a `[syzbot] [fs?] KASAN: ...` line), `HEAD commit:`, `git tree:`, `compiler:`,
`userspace arch:`, the links. Without a title anywhere the title is None, and any crash
counts. A 32-bit userspace ('userspace arch: i386', said by the email, a comment of repro.c or
the options line of repro.syz) means the reproducer is compiled with -m32.

load() checks the directory before any work: every InputError (exit 3) names the file and the
fix. compare_title() places a local crash against the report's title.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

from harness.errors import InputError

CONFIG_NAMES = ("config", ".config", "kernel.config", "config.txt")
REPRO_C_NAMES = ("repro.c", "repro.cprog", "reproducer.c")
REPRO_SYZ_NAMES = ("repro.syz", "repro.syz.txt", "repro.prog")
LOG_NAMES = ("log", "console.log", "console-output.txt", "log.txt")
TITLE_NAMES = ("title", "title.txt")
EMAIL_NAMES = ("report", "email", "report.txt", "email.txt", "report.eml", "email.eml")

_FIELD = re.compile(r"^(HEAD commit|git tree|console output|kernel config|dashboard link|compiler|"
                    r"userspace arch|syz repro|C reproducer|disk image|vmlinux|kernel image|"
                    r"console\+strace|Reported-by):\s*(.*?)\s*$", re.I)
_SUBJECT = re.compile(r"^Subject:\s*(.*)$", re.I)
_SYZ_LINE = re.compile(r"^\s*(?:Re:\s*)*\[syzbot\]\s*(.*)$", re.I)
_TAGS = re.compile(r"^(?:\[[^\]]*\]\s*)+")  # [syzbot] [fs?] [kernel?] ...
_EXTID = re.compile(r"extid=([0-9a-f]{6,})|syzbot\+([0-9a-f]{6,})@", re.I)
_ARCH_COMMENT = re.compile(r"userspace arch:\s*(\S+)|\barch\b[\"']?\s*[:=]\s*[\"']?(i386|386)\b",
                           re.I)
_RECURRENCE = re.compile(r"\s+\(\d+\)$")  # syzbot's 'title (2)' for a bug seen again


@dataclass
class SyzReport:
    dir: Path
    title: str | None
    alt_titles: list[str] = field(default_factory=list)
    commit: str | None = None
    commit_subject: str | None = None
    tree: str | None = None
    config: Path | None = None
    repro_c: Path | None = None
    repro_syz: Path | None = None
    log: Path | None = None
    email: Path | None = None
    arch32: bool = False
    arch_said_in: str | None = None  # 'file:line' that says 'userspace arch'
    compiler: str | None = None
    extid: str | None = None
    dashboard: str | None = None
    links: dict[str, str] = field(default_factory=dict)

    @property
    def cflags(self) -> list[str]:
        """Extra gcc flags the reproducer needs (-m32 for a 32-bit userspace)."""
        return ["-m32"] if self.arch32 else []

    def to_json(self) -> dict:
        d = {k: (str(v) if isinstance(v, Path) else v) for k, v in self.__dict__.items()}
        return d


def _find(d: Path, names: tuple[str, ...], globs: tuple[str, ...] = ()) -> Path | None:
    for n in names:
        p = d / n
        if p.is_file():
            return p
    for g in globs:
        hits = sorted(p for p in d.glob(g) if p.is_file())
        if len(hits) == 1:
            return hits[0]
    return None


def _read(p: Path, what: str) -> str:
    from harness import validate

    return validate.read_text(p, what, key="--report",
                              hint=f"save the report's {what} as text (UTF-8)")


def _unfold(text: str) -> list[tuple[int, str]]:
    """Lines of an email with RFC 5322 folded header lines joined: (first line number, line)."""
    out: list[tuple[int, str]] = []
    in_headers = True
    for n, raw in enumerate(text.splitlines(), 1):
        if in_headers and out and raw[:1] in (" ", "\t") and raw.strip():
            out[-1] = (out[-1][0], out[-1][1] + " " + raw.strip())
            continue
        if not raw.strip():
            in_headers = False
        out.append((n, raw))
    return out


def _title_of(line: str) -> str:
    t = _TAGS.sub("", line.strip()).strip()
    return t


def _email_fields(rep: SyzReport, path: Path, text: str) -> None:
    for n, line in _unfold(text):
        m = _SUBJECT.match(line)
        if m and rep.title is None:
            t = re.sub(r"^(?:(?:Re|Fwd?):\s*)+", "", m.group(1).strip(), flags=re.I)
            if t.lower().startswith("[syzbot]"):
                rep.title = _title_of(t) or None
            continue
        m = _SYZ_LINE.match(line)
        if m and rep.title is None and not line.lstrip().startswith(">"):
            rep.title = _title_of("[syzbot] " + m.group(1)) or None
            continue
        m = _FIELD.match(line.strip())
        if not m:
            if "syzbot+" in line:
                mm = _EXTID.search(line)
                if mm and not rep.extid:
                    rep.extid = mm.group(1) or mm.group(2)
            continue
        key, val = m.group(1).lower(), m.group(2)
        if key == "head commit":
            sha, _, subj = val.partition(" ")
            rep.commit = sha or None
            rep.commit_subject = subj.strip() or None
        elif key == "git tree":
            rep.tree = val or None
        elif key == "compiler":
            rep.compiler = val or None
        elif key == "userspace arch":
            if val.lower() in ("i386", "386", "x86"):
                rep.arch32 = True
                rep.arch_said_in = f"{path}:{n}"
        elif key == "dashboard link":
            rep.dashboard = val or None
            rep.links[key] = val
        elif key == "reported-by":
            mm = _EXTID.search(val)
            if mm:
                rep.extid = rep.extid or mm.group(1) or mm.group(2)
        else:
            rep.links[key] = val
        mm = _EXTID.search(val)
        if mm and not rep.extid:
            rep.extid = mm.group(1) or mm.group(2)


_ARCH32 = ("i386", "386")


def _say_arch32(rep: SyzReport, where: str) -> None:
    rep.arch32 = True
    rep.arch_said_in = rep.arch_said_in or where


def _arch_comment(rep: SyzReport, line: str, where: str) -> bool:
    """A comment line saying the reproducer is 32-bit x86 ('userspace arch: i386')."""
    m = _ARCH_COMMENT.search(line)
    if m and (m.group(1) or m.group(2) or "").lower() in _ARCH32:
        _say_arch32(rep, where)
        return True
    return False


def _arch_in_repro_c(rep: SyzReport, path: Path, text: str) -> None:
    for n, line in enumerate(text.splitlines()[:80], 1):
        s = line.strip()
        if not (s.startswith("//") or s.startswith("/*") or s.startswith("*")):
            continue
        if _arch_comment(rep, s, f"{path}:{n}"):
            return


def _arch_in_repro_syz(rep: SyzReport, path: Path, text: str) -> None:
    """The options line of a syz program: '# {"threaded":true,...}'; an 'arch' key of 386."""
    for n, line in enumerate(text.splitlines()[:5], 1):
        s = line.strip()
        if not s.startswith("#"):
            continue
        body = s.lstrip("#").strip()
        if body.startswith("{"):
            try:
                opts = json.loads(body)
            except ValueError:
                opts = {}
            if isinstance(opts, dict) and str(opts.get("arch", "")).lower() in _ARCH32:
                _say_arch32(rep, f"{path}:{n}")
                return
        if _arch_comment(rep, s, f"{path}:{n}"):
            return


def load(d: Path, key: str = "--report") -> SyzReport:
    """The report in directory D (see the module's doc); InputError (exit 3) naming the file and
    the fix when something it needs is missing."""
    from harness import validate

    d = Path(d)
    if not d.exists():
        raise InputError(f"{d}: no such directory", key=key,
                         hint="give the directory where you saved the syzbot report's files "
                              "(config, repro.c, and the email or a title file)")
    if not d.is_dir():
        raise InputError(f"{d} is not a directory", key=key,
                         hint="give a directory holding config, repro.c and the report email; "
                              "a lone C reproducer goes to 'wqh repro FILE.c'")
    rep = SyzReport(d.resolve(), None)
    rep.repro_c = _find(d, REPRO_C_NAMES, ("*.c",))
    rep.repro_syz = _find(d, REPRO_SYZ_NAMES, ("*.syz",))
    rep.config = _find(d, CONFIG_NAMES, ("*.config",))
    rep.log = _find(d, LOG_NAMES, ("*.log",))
    title_file = _find(d, TITLE_NAMES)
    rep.email = _find(d, EMAIL_NAMES, ("*.eml",))
    if rep.email is None:
        for p in sorted(d.glob("*.txt")):
            if p.is_file() and p != rep.config and p != rep.log and p != title_file:
                try:
                    head = p.read_text(errors="replace")[:20000]
                except OSError:
                    continue
                if "[syzbot]" in head or "syzbot" in head and "HEAD commit:" in head:
                    rep.email = p
                    break

    if rep.repro_c is None:
        if rep.repro_syz is not None:
            raise InputError("only a syzkaller program (repro.syz): it needs syz-execprog and "
                             "syz-executor from syzkaller, which wqh does not run",
                             file=str(rep.repro_syz), key=key,
                             hint=f"save the report's 'C reproducer' as {d / 'repro.c'}; syzbot "
                                  "gives one for most reports (syz-prog2c makes one otherwise)")
        raise InputError(f"{d}: no C reproducer (repro.c)", key=key,
                         hint=f"save the report's 'C reproducer' link as {d / 'repro.c'}")
    if rep.config is None:
        raise InputError(f"{d}: no kernel config (config)", key=key,
                         hint=f"save the report's 'kernel config' link as {d / 'config'}")
    validate.reproducer(rep.repro_c, key=key)
    if title_file is not None:
        lines = [ln.strip() for ln in _read(title_file, "title").splitlines() if ln.strip()]
        if lines:
            rep.title = _title_of(lines[0]) or None
            rep.alt_titles = [_title_of(x) for x in lines[1:]]
    if rep.email is not None:
        _email_fields(rep, rep.email, _read(rep.email, "report email"))
    _arch_in_repro_c(rep, rep.repro_c, _read(rep.repro_c, "C reproducer"))
    if rep.repro_syz is not None:
        _arch_in_repro_syz(rep, rep.repro_syz, _read(rep.repro_syz, "syz reproducer"))
    if rep.dashboard and not rep.extid:
        m = _EXTID.search(rep.dashboard)
        rep.extid = m.group(1) if m else None
    return rep


def _norm(t: str) -> str:
    return _RECURRENCE.sub("", " ".join(t.split()))


def title_match(got: str | None, got_alts, want: str | None, want_alts=()) -> str:
    """'exact' | 'alternative' | 'other kind' | 'none' of a local crash GOT (title and its alt
    titles; None: no report) against WANT (a report's title and alt titles; None: any crash).

    exact: the same title ('(2)' recurrence suffixes ignored); alternative: an alt title of one
    side is the other's title or alt title; other kind: a report with another title."""
    if not got:
        return "none"
    if want is None:
        return "exact"  # the report has no title: any crash is the one
    g, w = _norm(got), _norm(want)
    if g == w:
        return "exact"
    gs = {g} | {_norm(a) for a in got_alts or ()}
    ws = {w} | {_norm(a) for a in want_alts or ()}
    if gs & ws:
        return "alternative"
    return "other kind"


def compare_title(got, alt_titles=(), want: SyzReport | str | None = None) -> str:
    """title_match with GOT a title string (its alt titles in ALT_TITLES), a report object with
    .title and .alt_titles (harness.report.Report), or None; WANT a SyzReport or a title."""
    if got is not None and not isinstance(got, str):
        alt_titles = list(getattr(got, "alt_titles", ()) or ()) + list(alt_titles or ())
        got = getattr(got, "title", None)
    if isinstance(want, SyzReport):
        return title_match(got, alt_titles, want.title, want.alt_titles)
    return title_match(got, alt_titles, want)
