"""KCIDB v5 export of a wqh results directory: checkouts, builds and tests.

The schema and its validator are kcidb-io's (kcidb_io.schema.LATEST); nothing here restates
them. Everything is read from the results directory (results.json, kernels/<key>/,
<vm>/console.log, <vm>/vm.json), so a directory copied off a CI machine exports the same.

IDs are "<origin>:<hash>", the hash over the run's results.json content and the object's own
identity: the same directory exported twice gives the same bytes, another run other IDs.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import hashlib
import json
import os
import re
import tempfile
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import quote

import jsonschema
import kcidb_io

from harness.errors import InputError, WqhError
from harness.results import INFRA, Outcome, TestResult

SCHEMA = kcidb_io.schema.LATEST
ARCHITECTURE = "x86_64"
LOST = "lost"  # the guest's "never started" (harness.guest.protocol.LOST)

_ORIGIN_RE = re.compile(f"^{SCHEMA.origin_pattern}$")
_NOT_PATH_CHAR = re.compile(r"[^a-zA-Z0-9_-]+")
_EXCERPT_MAX = SCHEMA.json["$defs"]["test"]["properties"]["log_excerpt"]["maxLength"]
# source identity [+patches:h1,h2] [+config hash] (harness.source, harness.patches, runner)
_IDENTITY = re.compile(r"^(?P<src>.*?)(?:\+patches:(?P<patches>[0-9a-f,]*))?"
                       r"(?:\+(?P<cfg>[0-9a-f]{16}))?$")
# Messages of the infra-errors a kernel that never built gives its tests (config.py, build.py).
_BUILD_FAILED = ("kernel build failed", "kconfig fragments ask for options", "'make ",
                 "merge_config.sh failed")
_NEVER_RAN = ("never ran", "not run")


@dataclass(frozen=True)
class CheckoutInfo:
    """What results.json does not record about the source, given by the caller (CLI flags,
    CI variables). Applies to every checkout, or only to those of base source IDENTITY."""

    tree_name: str = ""
    git_repository_url: str = ""  # https:// only (the schema's rule)
    git_repository_branch: str = ""
    git_commit_hash: str = ""  # for a tree whose identity has none (a path at a known commit)
    patches: tuple[Path, ...] = ()  # patch files or directories of them: full patchset hashes
    comment: str = ""
    identity: str = ""


# ---- statuses -----------------------------------------------------------------------------

def never_ran(r: TestResult) -> bool:
    """The harness never started the test: the guest's 'lost', or an infra-error saying so."""
    return r.outcome == LOST or (r.outcome == INFRA and r.message.startswith(_NEVER_RAN))


def status_of(r: TestResult, built: bool = True) -> str:
    """The KCIDB status of one wqh result. BUILT: its kernel was built (a test of a kernel
    that never built never ran). A waiver does not change the status (it is in misc); flaky
    is PASS (noted in misc)."""
    o = r.outcome
    if o == LOST or (o == INFRA and (never_ran(r) or not built)):
        return "MISS"
    if o == INFRA:
        return "ERROR"
    if o == Outcome.SKIP:
        return "SKIP"
    if o in (Outcome.PASS, Outcome.XFAIL, Outcome.FLAKY):
        return "PASS"
    if o in (Outcome.FAIL, Outcome.CRASH, Outcome.XPASS, Outcome.HANG, Outcome.TIMEOUT):
        # The scenario's expectation met (a kernel without the feature fails its tests): the
        # kernel behaves as specified. The waiver is not an expectation.
        return "PASS" if dataclasses.replace(r, waived="").as_expected else "FAIL"
    raise InputError(f"test {r.scenario}: {r.test}: unknown outcome {o!r}", key="outcome",
                     hint="one of: " + ", ".join((*(x.value for x in Outcome), LOST)))


# ---- reading the results directory --------------------------------------------------------

def _load(results_dir: Path) -> dict:
    f = Path(results_dir) / "results.json"
    if not Path(results_dir).is_dir():
        raise InputError(f"{results_dir}: no such directory", key="RESULTS_DIR",
                         hint="give the directory a wqh run wrote (it holds results.json)")
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except FileNotFoundError:
        raise InputError(f"{f}: missing: not a wqh results directory", key="RESULTS_DIR",
                         hint="give the directory a wqh run wrote (it holds results.json)") from None
    except (OSError, UnicodeError, ValueError) as e:
        raise InputError(f"cannot read it: {e}", file=str(f),
                         hint="a results.json written by wqh is UTF-8 JSON") from None
    if not isinstance(data, dict) or not isinstance(data.get("tests"), list):
        raise InputError("no 'tests' list", file=str(f), key="tests")
    return data




def _result(d: dict, i: int, f: Path) -> TestResult:
    if not isinstance(d, dict) or not all(isinstance(d.get(k), str)
                                          for k in ("scenario", "test", "outcome")):
        raise InputError(f"test {i}: needs the strings scenario, test and outcome", file=str(f),
                         key=f"tests[{i}]")
    kw = dict(d)
    for k in ("kernel", "message", "vm", "waived", "expected"):
        kw[k] = kw.get(k) or ("pass" if k == "expected" else "")
    return TestResult.from_json(kw)


def _h(*parts: str) -> str:
    return hashlib.sha256("\0".join(parts).encode()).hexdigest()[:32]


def _url(p: Path, root: Path, base_url: str) -> str:
    """P's link: under BASE_URL when given and P is inside ROOT, else a file:// URL."""
    p = p.resolve()
    if base_url and p.is_relative_to(root.resolve()):
        return base_url.rstrip("/") + "/" + "/".join(
            quote(x) for x in p.relative_to(root.resolve()).parts)
    return p.as_uri()


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.timezone.utc).isoformat()


def _started(data: dict) -> str | None:
    """results.json 'started' (local time, no offset: read as this machine's local time)."""
    s = data.get("started")
    if not isinstance(s, str):
        return None
    try:
        t = dt.datetime.fromisoformat(s)
    except ValueError:
        return None
    return t.astimezone(dt.timezone.utc).isoformat()


def _json_file(p: Path) -> dict:
    try:
        d = json.loads(p.read_text(encoding="utf-8"))
    except (OSError, UnicodeError, ValueError):
        return {}
    return d if isinstance(d, dict) else {}


def _compiler(config: Path) -> str:
    try:
        for line in config.read_text(errors="replace").splitlines():
            if line.startswith("CONFIG_CC_VERSION_TEXT="):
                return line.partition("=")[2].strip().strip('"')
    except OSError:
        pass
    return ""


def _clean(s: str) -> str:
    return s.replace("\0", "")


def _excerpt(*parts: str) -> str:
    """PARTS joined, within the schema's length: the head of each kept, the cut said so."""
    text = _clean("\n".join(p for p in parts if p).strip())
    if len(text) <= _EXCERPT_MAX:
        return text
    cut = "\n[... cut by wqh to the KCIDB length limit]"
    return text[:_EXCERPT_MAX - len(cut)] + cut


def path_component(s: str) -> str:
    """S as one KCIDB test path component (dots separate components: none inside one)."""
    return _NOT_PATH_CHAR.sub("_", s).strip("_") or "_"


def test_path(scenario: str, test: str) -> str:
    """'wqh.<scenario>.<module>.<class...>.<test>' from a pytest node id."""
    file, _, rest = test.partition("::")
    module = Path(file).name
    if module.endswith(".py"):
        module = module[:-3]
    parts = ["wqh", scenario, module, *(x for x in rest.split("::") if x)]
    return ".".join(path_component(p) for p in parts)


# ---- patches -------------------------------------------------------------------------------

def _patch_files(info: CheckoutInfo | None) -> dict[str, Path]:
    """16-hex prefix (harness.patches.patch_hashes) -> file, of the patches INFO names."""
    out: dict[str, Path] = {}
    for p in (info.patches if info else ()):
        p = Path(p)
        files = sorted(x for x in p.rglob("*") if x.is_file() and x.suffix in (".patch", ".diff")) \
            if p.is_dir() else [p]
        for f in files:
            try:
                full = hashlib.sha256(f.read_bytes()).hexdigest()
            except OSError as e:
                raise InputError(f"{f}: {e.strerror}", key="patches") from None
            out.setdefault(full[:16], f)
    return out


def patchset_hash(files: list[Path]) -> str:
    """KCIDB's patchset hash: sha256 over the newline-terminated sha256 of each patch."""
    lines = "".join(hashlib.sha256(f.read_bytes()).hexdigest() + "\n" for f in files)
    return hashlib.sha256(lines.encode()).hexdigest() if files else ""


# ---- export ---------------------------------------------------------------------------------

def check_origin(origin: str) -> str:
    if not isinstance(origin, str) or not _ORIGIN_RE.match(origin):
        raise InputError(f"origin {origin!r} is not a KCIDB origin name", key="--origin",
                         hint=f"lower-case letters, digits and '_' ({SCHEMA.origin_pattern})")
    return origin


def _describe(src: str) -> tuple[dict, str]:
    """(checkout fields, comment) known from a base source identity alone."""
    kind, _, rest = src.partition(":")
    if kind == "git" and re.fullmatch(SCHEMA.git_commit_hash_pattern, rest):
        return {"git_commit_hash": rest}, f"git commit {rest}"
    if kind == "debian":
        pkg, _, ver = rest.partition(":")
        return {"tree_name": "debian"}, f"Debian {pkg} {ver}".strip()
    if kind == "path":
        return {}, f"working tree {rest} (contents not recorded)"
    if not src:
        return {}, "unknown source (the run stopped before it was resolved)"
    return {}, src


def export(results_dir: Path, origin: str = "wqh", checkout: CheckoutInfo | None = None,
           base_url: str = "") -> dict:
    """The KCIDB v5 document (latest minor) of the wqh results directory RESULTS_DIR, validated.

    BASE_URL: where the directory is published (links are BASE_URL/<relative path>); without
    it, links are file:// URLs of the directory on this machine."""
    check_origin(origin)
    if base_url and not re.match(r"^[a-z][a-z0-9+.-]*://", base_url):
        raise InputError(f"base URL {base_url!r} has no scheme", key="--base-url",
                         hint="e.g. https://ci.example.org/artifacts/run-42")
    root = Path(results_dir)
    data = _load(root)
    rfile = root / "results.json"
    run_key = hashlib.sha256(json.dumps(data, sort_keys=True).encode()).hexdigest()
    started = _started(data)
    tests = [_result(d, i, rfile) for i, d in enumerate(data["tests"])]
    kernels = data.get("kernels") if isinstance(data.get("kernels"), dict) else {}
    by_identity: dict[str, tuple[str, dict]] = {}
    for key, k in sorted(kernels.items()):
        if isinstance(k, dict) and isinstance(k.get("identity"), str):
            by_identity.setdefault(k["identity"], (key, k))
    patch_files = _patch_files(checkout)

    def oid(kind: str, *parts: str) -> str:
        return f"{origin}:{_h(run_key, kind, *parts)}"

    def link(p: Path) -> str | None:
        return _url(p, root, base_url) if p.is_file() else None

    checkouts: dict[tuple, dict] = {}
    builds: dict[str, dict] = {}
    kcidb_tests: list[dict] = []
    seen: dict[str, int] = {}
    vms: dict[str, dict] = {}

    def checkout_of(identity: str) -> str:
        m = _IDENTITY.match(identity)
        src, hashes = m["src"], tuple(h for h in (m["patches"] or "").split(",") if h)
        ck = (src, hashes)
        if ck in checkouts:
            return checkouts[ck]["id"]
        fields, comment = _describe(src)
        c = {"id": oid("checkout", src, *hashes), "origin": origin, **fields}
        info = checkout if checkout and checkout.identity in ("", src) else None
        if info:
            for f in ("tree_name", "git_repository_url", "git_repository_branch"):
                if getattr(info, f):
                    c[f] = getattr(info, f)
            if info.git_commit_hash and "git_commit_hash" not in c:
                c["git_commit_hash"] = info.git_commit_hash
            comment = info.comment or comment
        misc: dict = {"identity": src}
        if not hashes:
            c["patchset_hash"] = ""
        else:
            misc["patches"] = list(hashes)
            files = [patch_files.get(h) for h in hashes]
            if all(files):
                c["patchset_hash"] = patchset_hash(files)
                c["patchset_files"] = [{"name": f.name, "url": f.resolve().as_uri()}
                                       for f in files]
            comment += f" + {len(hashes)} patch{'es' if len(hashes) > 1 else ''}"
        if started:
            c["start_time"] = started
        c["comment"] = _clean(comment)
        c["misc"] = misc
        checkouts[ck] = c
        return c["id"]

    def build_of(identity: str) -> str:
        if identity in builds:
            return builds[identity]["id"]
        b = {"id": oid("build", identity), "origin": origin,
             "checkout_id": checkout_of(identity), "architecture": ARCHITECTURE}
        misc: dict = {"identity": identity}
        if identity in by_identity:
            key, k = by_identity[identity]
            kdir = root / "kernels" / key
            if not kdir.is_dir() and isinstance(k.get("artifacts"), str):
                kdir = Path(k["artifacts"])
            bj = _json_file(kdir / "build.json")
            frags = [Path(f).name.removesuffix(".config") for f in bj.get("fragments") or []
                     if isinstance(f, str)]
            if frags:
                b["config_name"] = "+".join(frags)
            for field, p in (("config_url", kdir / "config"),
                             ("log_url", kdir / "build-log-tail.txt")):
                if url := link(p):
                    b[field] = url
            if cc := _compiler(kdir / "config"):
                b["compiler"] = _clean(cc)
            wall = k.get("build_wall_s")
            if isinstance(wall, (int, float)) and not k.get("reused"):
                b["duration"] = float(wall)
            b["status"] = "PASS"
            misc.update(key=key, reused=bool(k.get("reused")))
            for f in ("cpu_s", "objects", "ccache"):
                if f in bj:
                    misc[f] = bj[f]
        else:
            # No kernel: its tests say why (all infra-errors, the message of the failure).
            mine = [r for r in tests if r.kernel == identity]
            msgs = list(dict.fromkeys(r.message for r in mine if r.message))
            if mine and all(r.outcome == INFRA for r in mine):
                if any(m.startswith(_BUILD_FAILED) for m in msgs):
                    b["status"] = "FAIL"
                elif msgs and all(m.startswith(_NEVER_RAN) for m in msgs):
                    b["status"] = "MISS"
                else:
                    b["status"] = "ERROR"
                if msgs:
                    b["log_excerpt"] = _excerpt(*msgs)
            misc["built"] = False
        b["misc"] = misc
        builds[identity] = b
        return b["id"]

    for r in tests:
        bid = build_of(r.kernel)
        built = r.kernel in by_identity
        status = status_of(r, built)
        ident = "\0".join((r.scenario, r.test, r.variant or "", r.kernel))
        n = seen[ident] = seen.get(ident, -1) + 1
        t = {"id": oid("test", ident, str(n)), "origin": origin, "build_id": bid,
             "path": test_path(r.scenario, r.test), "status": status}
        if r.duration_s is not None:
            t["duration"] = float(r.duration_s)
        titles = [x.title + (f" (x{x.count})" if x.count > 1 else "") for x in r.reports]
        if excerpt := _excerpt("\n".join(titles), r.message):
            t["log_excerpt"] = excerpt
        start = started
        if r.vm:
            vdir = root / r.vm
            if url := link(vdir / "console.log"):
                t["log_url"] = url
            if r.vm not in vms:
                vms[r.vm] = _json_file(vdir / "vm.json")
            vj = vms[r.vm]
            if isinstance(vj.get("started_at"), (int, float)):
                start = _iso(vj["started_at"])
            t["environment"] = {"comment": _clean(f"QEMU VM {r.vm}" + (
                f" ({vj['accel']})" if isinstance(vj.get("accel"), str) else "")),
                "misc": {"vm": r.vm}}
        if start:
            t["start_time"] = start
        misc: dict = {"scenario": r.scenario, "test": r.test, "outcome": r.outcome,
                      "expected": r.expected, "kernel": r.kernel,
                      "reports": [{"title": x.title, "type": x.type, "count": x.count,
                                   "corrupted": x.corrupted} for x in r.reports]}
        if r.variant:
            misc["variant"] = r.variant
        if r.outcome == Outcome.FLAKY:
            misc["note"] = "flaky: failed, then passed in a fresh VM with no kernel report"
        if r.attempts:
            misc["attempts"] = r.attempts
        if r.waived:
            misc["waived"] = r.waived
        t["misc"] = misc
        kcidb_tests.append(t)

    for c in checkouts.values():
        if any(b["checkout_id"] == c["id"] and b.get("status") == "PASS" for b in builds.values()):
            c["valid"] = True
    doc = {"version": {"major": SCHEMA.major, "minor": SCHEMA.minor},
           "checkouts": list(checkouts.values()), "builds": list(builds.values()),
           "tests": kcidb_tests}
    validate(doc)
    return doc


# ---- validation, writing, reading back ------------------------------------------------------

def validate(doc: dict) -> dict:
    """DOC if it is a valid KCIDB document (any version kcidb-io knows), else an InputError
    naming the first offending place."""
    try:
        return SCHEMA.validate(doc)
    except jsonschema.exceptions.ValidationError as e:
        where = "".join(f"[{p}]" if isinstance(p, int) else f".{p}" for p in e.absolute_path)
        raise InputError(f"not a valid KCIDB v{SCHEMA.major}.{SCHEMA.minor} document: at "
                         f"'{where.lstrip('.') or '(top)'}': {e.message}",
                         hint="see the KCIDB schema (kcidb_io.schema.LATEST.json)") from None


def write(doc: dict, path: Path) -> None:
    """Validate DOC and write it to PATH as JSON, atomically (a reader never sees half)."""
    validate(doc)
    path = Path(path)
    text = json.dumps(doc, indent=2, ensure_ascii=False) + "\n"
    try:
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"{path}: cannot write there: {e.strerror}", key="--kcidb",
                         hint="give a file in an existing, writable directory") from None
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(text)
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException as e:
        Path(tmp).unlink(missing_ok=True)
        if isinstance(e, OSError):
            raise WqhError(f"{path}: cannot write the KCIDB document: {e.strerror}") from None
        raise


def read_back(doc: dict) -> list[dict]:
    """The per-test view of a KCIDB document wqh wrote: {scenario, test, kernel, outcome,
    expected, status, path, build_status}, in document order (after validating it)."""
    validate(doc)
    build_status = {b["id"]: b.get("status") for b in doc.get("builds", [])}
    out = []
    for t in doc.get("tests", []):
        m = t.get("misc", {})
        out.append({"scenario": m.get("scenario"), "test": m.get("test"),
                    "kernel": m.get("kernel"), "outcome": m.get("outcome"),
                    "expected": m.get("expected"), "status": t.get("status"),
                    "path": t.get("path"), "build_status": build_status.get(t["build_id"])})
    return out
