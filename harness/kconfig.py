"""Reading kconfig files: fragments, .config, and the Kconfig dependency of a symbol.

Only reads; the merge itself is done by the kernel's merge_config.sh (config.py).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path

from harness.errors import InputError

_SET = re.compile(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$")
_UNSET = re.compile(r"^# CONFIG_([A-Za-z0-9_]+) is not set$")


@dataclass(frozen=True)
class Option:
    """One request from a fragment: CONFIG_<name>=<value> ('n' means not set)."""

    name: str
    value: str
    file: str
    line: int

    def __str__(self) -> str:
        return f"CONFIG_{self.name}={self.value}"


def _norm(value: str) -> str:
    return "n" if value == "n" else value


def parse_fragment(path: Path) -> list[Option]:
    """Options requested by one fragment, with file and line for error messages."""
    from harness import validate

    hint = "check the fragment name; fragments live in kconfigs/"
    try:
        text = validate.read_text(path, "kconfig fragment", hint=hint)
    except OSError as e:
        raise InputError(f"cannot read kconfig fragment: {e.strerror}", file=str(path),
                         hint=hint) from e
    opts: list[Option] = []
    for n, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line:
            continue
        m = _SET.match(line)
        if m:
            value = m.group(2).strip()
            if not validate.KCONFIG_VALUE.match(value):
                raise InputError(f"CONFIG_{m.group(1)}={value}: not a kconfig value",
                                 file=str(path), line=n, key=f"CONFIG_{m.group(1)}",
                                 hint="use y, m, n, a number, 0x-hex or a \"quoted string\"")
            opts.append(Option(m.group(1), _norm(value), str(path), n))
            continue
        m = _UNSET.match(line)
        if m:
            opts.append(Option(m.group(1), "n", str(path), n))
            continue
        if line.startswith("#"):
            continue
        raise InputError(f"not a kconfig line: {raw!r}", file=str(path), line=n,
                         hint="use CONFIG_FOO=y, CONFIG_FOO=n or '# CONFIG_FOO is not set'")
    return opts


def parse_dotconfig(text: str) -> dict[str, str]:
    """Symbol -> value of a .config; unset symbols map to 'n'."""
    values: dict[str, str] = {}
    for line in text.splitlines():
        m = _SET.match(line)
        if m:
            values[m.group(1)] = m.group(2)
            continue
        m = _UNSET.match(line)
        if m:
            values[m.group(1)] = "n"
    return values


def requested_missing(requests: list[Option], final: dict[str, str]) -> list[tuple[Option, str]]:
    """Requests the final .config does not honour, with the value it has instead."""
    # Later fragments override earlier ones, as in merge_config.sh.
    last: dict[str, Option] = {}
    for o in requests:
        last[o.name] = o
    missing = []
    for o in last.values():
        have = final.get(o.name, "n")
        if have != o.value:
            missing.append((o, have))
    return missing


# --- Kconfig dependencies -------------------------------------------------------------

_CONFIG_HDR = re.compile(r"^\s*(?:menu)?config\s+([A-Za-z0-9_]+)\s*$")
_DEPENDS = re.compile(r"^\s*depends\s+on\s+(.+?)\s*$")
_IF = re.compile(r"^\s*if\s+(.+?)\s*$")
_ENDIF = re.compile(r"^\s*endif\b")
_MENU = re.compile(r"^\s*(menu|choice)\b")
_ENDMENU = re.compile(r"^\s*(endmenu|endchoice)\b")
_SOURCE = re.compile(r'^\s*(?:o|r|or)?source\s+"([^"]+)"')
_SYMBOL = re.compile(r"\b([A-Z0-9_]+)\b")


@dataclass
class Dependency:
    symbol: str
    expressions: list[str]  # every 'depends on' / enclosing 'if' / menu dependency
    unmet: list[str]  # symbols in those expressions that are n in the final config
    defined_at: str


def _strip_comment(line: str) -> str:
    return line.split("#", 1)[0] if "#" in line and '"' not in line else line


_TERM = re.compile(r"(!\s*)?\b([A-Z0-9_]+)\b")


def _unmet_symbols(expr: str, final: dict[str, str]) -> list[str]:
    """The symbols of a 'depends on' expression that hold it back: SYM when it is off, !SYM
    when it is on (so `depends on !KASAN` names KASAN only when KASAN is set)."""
    out = []
    for neg, sym in _TERM.findall(expr):
        if sym.isdigit():
            continue
        on = final.get(sym, "n") != "n"
        if on == bool(neg):
            out.append(sym)
    return out


def unmet_text(unmet: list[str], final: dict[str, str]) -> str:
    """'CONFIG_A=n, CONFIG_B=y': each unmet symbol with the value that holds the option back."""
    return ", ".join(f"CONFIG_{s}={final.get(s, 'n')}" for s in unmet)


def find_dependency(srctree: Path, symbol: str, final: dict[str, str]) -> Dependency | None:
    """Where SYMBOL is defined and which of its dependencies are off in FINAL.

    A small reader of Kconfig: it follows 'source', tracks enclosing 'if' and
    menu/choice 'depends on', and collects the symbol's own 'depends on' lines.
    """
    seen: set[Path] = set()
    result: list[Dependency] = []

    def walk(path: Path, outer: list[str]) -> None:
        if path in seen or not path.is_file():
            return
        seen.add(path)
        stack: list[tuple[str, list[str]]] = []  # ('if'|'menu', deps)
        current: str | None = None
        current_deps: list[str] = []
        current_at = ""

        def flush() -> None:
            nonlocal current
            if current == symbol:
                ctx = outer + [d for _, ds in stack for d in ds]
                exprs = ctx + current_deps
                unmet = sorted({s for e in exprs for s in _unmet_symbols(e, final)})
                result.append(Dependency(symbol, exprs, unmet, current_at))
            current = None

        pending_menu = False
        help_indent: int | None = -1  # -1: not in a help text
        for n, raw in enumerate(path.read_text(errors="replace").splitlines(), 1):
            # Help texts are prose ("if you say Y here..."): skip them by indentation.
            if help_indent != -1:
                if not raw.strip():
                    continue
                indent = len(raw.expandtabs(8)) - len(raw.expandtabs(8).lstrip())
                if help_indent is None:
                    help_indent = indent
                if indent >= help_indent:
                    continue
                help_indent = -1
            if raw.strip() in ("help", "---help---"):
                help_indent = None
                continue
            line = _strip_comment(raw)
            m = _CONFIG_HDR.match(line)
            if m:
                flush()
                pending_menu = False
                current, current_deps = m.group(1), []
                current_at = f"{path.relative_to(srctree)}:{n}"
                continue
            m = _DEPENDS.match(line)
            if m:
                if current is not None:
                    current_deps.append(m.group(1))
                elif pending_menu and stack:
                    stack[-1][1].append(m.group(1))
                continue
            if _ENDIF.match(line):
                flush()
                if stack and stack[-1][0] == "if":
                    stack.pop()
                continue
            m = _IF.match(line)
            if m and not line.lstrip().startswith("if_"):
                flush()
                stack.append(("if", [m.group(1)]))
                continue
            if _ENDMENU.match(line):
                flush()
                if stack and stack[-1][0] == "menu":
                    stack.pop()
                continue
            if _MENU.match(line):
                flush()
                stack.append(("menu", []))
                pending_menu = True
                continue
            m = _SOURCE.match(line)
            if m:
                flush()
                target = m.group(1).replace("$(SRCARCH)", "x86")
                ctx = outer + [d for _, ds in stack for d in ds]
                for p in sorted(srctree.glob(target)):
                    walk(p, ctx)
                continue
        flush()

    walk(srctree / "Kconfig", [])
    if not result:
        return None
    # A symbol may be defined in several places; the first with unmet deps explains most.
    result.sort(key=lambda d: (not d.unmet,))
    return result[0]
