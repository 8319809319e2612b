"""file:line and inlined calls for report frames, from the build's vmlinux (DWARF).

The kernel's own scripts/decode_stacktrace.sh does the work when the tree has it (one run for
all the frames of a log); `addr2line -afie vmlinux` is the fallback, and also names the inlined
functions, which decode_stacktrace.sh (6.1) lists by file:line only. Titles never change here:
report.py computes them on the frames the kernel printed.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass, field
from pathlib import Path

from harness import procs
from harness.report import tree_path
from harness.report import Frame, Report

Key = tuple[str, int, int, str | None]  # (function, offset, size, module) as printed


@dataclass(frozen=True)
class Loc:
    func: str | None  # None: decode_stacktrace.sh gave no name for this inlined level
    file: str
    line: int


# decode_stacktrace.sh: "watch_queue_set_filter (a/instrumented.h:42 b/bitops.h:28 kernel/watch_queue.c:380) "
# (innermost location first; the last is in the function itself), with the module after it.
_DECODED = re.compile(r"^(?:\?\s+)?(?P<func>[^\s(]+) \((?P<locs>.*)\)(?:\s+\S+)?\s*$")
_LOC = re.compile(r"([^\s()]+):(\d+)")
_ADDR = re.compile(r"^0x[0-9a-f]+$")
# Files at the top of a kernel tree: where a tree-relative path starts.
_TREE_MARKERS = ("Kbuild", "MAINTAINERS")


@dataclass
class Symbolizer:
    vmlinux: Path
    tree: Path | None = None       # the source tree (decode_stacktrace.sh, relative file names)
    use_script: bool = True        # False: addr2line only
    timeout_s: float = 120.0
    error: str = ""                # why some frames stayed without file:line, if they did
    _symbols: dict[str, list[tuple[int, int]]] | None = field(default=None, repr=False)

    @classmethod
    def for_build(cls, vmlinux: Path, tree: Path | None = None, **kw) -> Symbolizer:
        """An O= build directory links its source tree as 'source'; an in-tree build is one."""
        vmlinux = Path(vmlinux)
        if tree is None:
            d = vmlinux.resolve().parent
            for cand in (d / "source", d):
                if (cand / "scripts" / "decode_stacktrace.sh").is_file():
                    tree = cand.resolve()
                    break
        return cls(vmlinux, tree, **kw)

    # --- the whole job ---

    def symbolize(self, reports: list[Report]) -> None:
        """Give the reports' frames file:line and insert their inlined calls (inline=True),
        innermost first, just before the frame they were inlined into. Frames that already
        carry a file (a log symbolized by syzbot) are left as they are."""
        keys: list[Key] = []
        for r in reports:
            for f in r.frames:
                k = _key(f)
                if k and k not in keys:
                    keys.append(k)
        if not keys:
            return
        if not self.matches(keys):
            self.error = (f"{self.vmlinux} is not the kernel of this log (the sizes of the "
                          "functions it printed differ): frames left without file:line")
            return
        found = self.locate(keys)
        if not found and not self.error:
            self.error = (f"no frame resolved: does {self.vmlinux} have debug info "
                          "(CONFIG_DEBUG_INFO)?")
        for r in reports:
            out: list[Frame] = []
            for f in r.frames:
                chain = found.get(_key(f)) if _key(f) else None
                if chain:
                    for loc in chain[:-1]:
                        out.append(Frame(func=loc.func or "?", file=loc.file, line=loc.line,
                                         inline=True, section=f.section, irq=f.irq))
                    f.file, f.line = chain[-1].file, chain[-1].line
                out.append(f)
            r.frames = out

    def locate(self, keys: list[Key]) -> dict[Key, list[Loc]]:
        """Key -> its locations, innermost inlined call first, the function's own line last."""
        script = self.tree / "scripts" / "decode_stacktrace.sh" if self.tree else None
        if self.use_script and script and script.is_file():
            try:
                found = self._decode(script, keys)
            except (OSError, subprocess.SubprocessError, ValueError) as e:
                self.error = f"decode_stacktrace.sh: {e}; used addr2line"
            else:
                self._name_inlined(found)
                return found
        return self._addr2line(keys)

    # --- decode_stacktrace.sh ---

    def _decode(self, script: Path, keys: list[Key]) -> dict[Key, list[Loc]]:
        lines = [" " + _frame_text(k) for k in keys]
        modpath = self.vmlinux.resolve().parent  # an O= build keeps the .ko files there
        out = self._run(["bash", str(script), str(self.vmlinux), str(self.tree), str(modpath)],
                        "\n".join(lines) + "\n")
        got = out.splitlines()
        if len(got) != len(keys):
            raise ValueError(f"{len(got)} lines for {len(keys)} frames: unknown output format")
        found = {}
        for k, text in zip(keys, got):
            locs = parse_decoded(text)
            if locs:
                found[k] = [Loc(name, self._rel(f), ln) for name, f, ln in locs]
        return found

    def _name_inlined(self, found: dict[Key, list[Loc]]) -> None:
        """decode_stacktrace.sh (6.1) gives inlined levels as file:line only: name them."""
        todo = [k for k, chain in found.items() if any(loc.func is None for loc in chain)]
        if not todo or not shutil.which("addr2line"):
            return
        named = self._addr2line(todo)
        for k in todo:
            chain, names = found[k], named.get(k)
            if names and len(names) == len(chain):
                found[k] = [Loc(n.func, loc.file, loc.line) for loc, n in zip(chain, names)]

    # --- addr2line ---

    def _addr2line(self, keys: list[Key]) -> dict[Key, list[Loc]]:
        addrs: dict[int, Key] = {}
        for k in keys:
            a = self.address(k)
            if a is not None:
                addrs.setdefault(a, k)
        if not addrs:
            return {}
        if not shutil.which("addr2line"):
            self.error = "addr2line is not installed (binutils)"
            return {}
        try:
            out = self._run(["addr2line", "-a", "-f", "-i", "-e", str(self.vmlinux)],
                            "\n".join(f"0x{a:x}" for a in addrs) + "\n")
        except (OSError, subprocess.SubprocessError) as e:
            self.error = f"addr2line: {e}"
            return {}
        found = {}
        for addr, chain in parse_addr2line(out).items():
            k = addrs.get(addr)
            if k and chain:
                found[k] = [Loc(fn, self._rel(f), ln) for fn, f, ln in chain]
        return found

    def matches(self, keys: list[Key]) -> bool:
        """Whether the log's "func+off/size" fit this vmlinux: most known functions same size."""
        syms = self.symbols()
        known = [k for k in keys if not k[3] and k[0] in syms]
        fit = [k for k in known if any(size == k[2] for _, size in syms[k[0]])]
        return not known or len(fit) * 2 >= len(known)

    def address(self, k: Key) -> int | None:
        """The address decode_stacktrace.sh would look up: symbol start + offset (vmlinux only)."""
        func, off, size, module = k
        if module:
            return None
        cands = self.symbols().get(func)
        if not cands:
            return None
        # Static functions can share a name: prefer the one of the printed size.
        start = next((a for a, s in cands if s == size), cands[0][0])
        return start + off

    def symbols(self) -> dict[str, list[tuple[int, int]]]:
        """Text symbols: name -> [(address, size up to the next symbol)], from System.map or nm."""
        if self._symbols is None:
            smap = self.vmlinux.resolve().parent / "System.map"
            if smap.is_file():
                text = smap.read_text(errors="replace")
            else:
                text = self._run(["nm", "-n", str(self.vmlinux)], None)
            rows = []
            for ln in text.splitlines():
                parts = ln.split()
                if len(parts) == 3 and parts[1] in "tTwW":
                    try:
                        rows.append((int(parts[0], 16), parts[2]))
                    except ValueError:
                        continue
            rows.sort()
            syms: dict[str, list[tuple[int, int]]] = {}
            for i, (a, name) in enumerate(rows):
                size = rows[i + 1][0] - a if i + 1 < len(rows) else 0
                syms.setdefault(name, []).append((a, size))
            self._symbols = syms
        return self._symbols

    # --- helpers ---

    def _run(self, cmd: list[str], stdin: str | None) -> str:
        with procs.popen(cmd, stdin=subprocess.PIPE if stdin is not None else subprocess.DEVNULL,
                         stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                         errors="replace") as p:
            out, err = p.communicate(stdin, timeout=self.timeout_s)  # on timeout: killed on exit
        if p.returncode != 0:
            raise subprocess.SubprocessError(f"{cmd[0]} exited {p.returncode}: {err.strip()[-300:]}")
        return out

    def _rel(self, path: str) -> str:
        """A DWARF path relative to the kernel tree (O= builds record 'builddir/../../src/...')."""
        p = os.path.normpath(path)
        if not os.path.isabs(p):
            return tree_path(p)
        if self.tree:
            for t in {str(self.tree), os.path.realpath(self.tree)}:
                if p.startswith(t.rstrip("/") + "/"):
                    return p[len(t.rstrip("/")) + 1:]
        d = os.path.dirname(p)
        while d not in ("/", ""):
            if all(os.path.exists(os.path.join(d, m)) for m in _TREE_MARKERS):
                return os.path.relpath(p, d)
            d = os.path.dirname(d)
        return tree_path(p)


def _key(f: Frame) -> Key | None:
    if f.inline or f.file or f.offset is None or f.size is None:
        return None
    return (f.func, f.offset, f.size, f.module)


def _frame_text(k: Key) -> str:
    func, off, size, module = k
    return f"{func}+0x{off:x}/0x{size:x}" + (f" [{module}]" if module else "")


def parse_decoded(line: str) -> list[tuple[str | None, str, int]]:
    """One output line of decode_stacktrace.sh -> [(function or None, file, line)], innermost first.

    The function named on the line is the outermost (last) location's; the locations before it
    are calls inlined into it, whose names this format does not give."""
    m = _DECODED.match(line.strip())
    if not m:
        return []
    locs = [(f, int(n)) for f, n in _LOC.findall(m.group("locs"))]
    if not locs:
        return []
    func = m.group("func").split("+", 1)[0]
    if ":" in func:  # "RIP: 0010:func" keeps its segment
        func = func.rsplit(":", 1)[-1]
    return [(None, f, n) for f, n in locs[:-1]] + [(func, locs[-1][0], locs[-1][1])]


def parse_addr2line(out: str) -> dict[int, list[tuple[str, str, int]]]:
    """`addr2line -a -f -i` output -> address: [(function, file, line)], innermost first."""
    res: dict[int, list[tuple[str, str, int]]] = {}
    cur: list[tuple[str, str, int]] | None = None
    lines = out.splitlines()
    i = 0
    while i < len(lines):
        ln = lines[i].strip()
        if _ADDR.match(ln):
            cur = res.setdefault(int(ln, 16), [])
            i += 1
            continue
        if cur is not None and i + 1 < len(lines):
            func, loc = ln, lines[i + 1].strip()
            loc = loc.split(" (discriminator", 1)[0]
            f, _, n = loc.rpartition(":")
            if func != "??" and f and f != "??" and n.isdigit() and int(n) > 0:
                cur.append((func, f, int(n)))
            i += 2
            continue
        i += 1
    return res
