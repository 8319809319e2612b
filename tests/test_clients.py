"""harness.clients: keyctl's and watch_test's text read as events, compared with wqh's records."""

import os
import re
import struct

import pytest

from conftest import DATA
from harness import clients
from harness.clients import KEY, LOSS, OTHER, REMOVAL, Event, Note
from harness.guest import uapi

(INSTANTIATED, UPDATED, LINKED, UNLINKED, CLEARED, REVOKED, INVALIDATED,
 SETATTR) = range(8)
rec, removal = uapi.key_record, uapi.removal_record

# The scripted session of guest-tests/test_clients.py, with the key ids of the fixtures.
R1, R2, K, K2 = 444664923, 414952832, 856094046, 869410050
WID = {R1: 1, R2: 2, K: 3}  # wqh's watch ids
COMMON = [
    ("add_key K into R1", [rec(LINKED, 1, R1, K)]),
    ("update K", [rec(UPDATED, 3, K)]),
    ("link K into R2", [rec(LINKED, 2, R2, K)]),
    ("unlink K from R2", [rec(UNLINKED, 2, R2, K)]),
    ("add_key K2 into R2", [rec(LINKED, 2, R2, K2)]),
    ("clear R2", [rec(CLEARED, 2, R2)]),
    ("setperm K", [rec(SETATTR, 3, K)]),
    ("revoke K", [rec(REVOKED, 3, K)]),
    ("unlink K from R1", [rec(UNLINKED, 1, R1, K), removal(3, K)]),
    ("invalidate R2", [rec(INVALIDATED, 2, R2), removal(2, R2)]),
]
WATCH_SCRIPT = COMMON + [("invalidate R1", [rec(INVALIDATED, 1, R1), removal(1, R1)])]
SESSION_SCRIPT = COMMON + [("watch_rm R1", [removal(1, R1)])]


def _wire(records):
    """The bytes read() returns for these records (struct watch_notification + payload)."""
    return b"".join(struct.pack("<II", r.type | r.subtype << 24, r.info) + r.payload for r in records)


def _wqh(script):
    """wqh's reading: the binding decodes the bytes, clients normalizes its records."""
    return clients.from_records(uapi.decode(_wire([r for _, recs in script for r in recs])))


def _fixture(name):
    text = (DATA / "clients" / name).read_text()
    assert text.startswith("#"), f"{name} must say in its header how it was obtained"
    return "".join(line for line in text.splitlines(True) if not line.startswith("# "))


def _sections(text):
    """'## keyctl watch ID' sections of keyctl-watch.txt: {ID: text}."""
    out = {}
    for part in re.split(r"^## ", text, flags=re.M)[1:]:
        head, _, body = part.partition("\n")
        out[int(head.split()[-1])] = body
    return out


# --- keyctl: every line kind ----------------------------------------------------------------

@pytest.mark.parametrize("line, want", [
    ("856094046 inst", Event(KEY, "instantiated", 856094046)),
    ("856094046 upd", Event(KEY, "updated", 856094046)),
    ("444664923 link 856094046", Event(KEY, "linked", 444664923, 856094046)),
    ("444664923 unlk 856094046", Event(KEY, "unlinked", 444664923, 856094046)),
    ("444664923 clr", Event(KEY, "cleared", 444664923)),
    ("856094046 rev", Event(KEY, "revoked", 856094046)),
    ("856094046 inv", Event(KEY, "invalidated", 856094046)),
    ("856094046 attr", Event(KEY, "setattr", 856094046)),
    ("4294967295 attr", Event(KEY, "setattr", 0xFFFFFFFF)),  # %u of a u32
    ("856094046 gc", Event(REMOVAL, key_id=856094046)),
    ("0 gc", Event(REMOVAL, key_id=0)),  # a removal record shorter than 16 bytes
    ("-- LOSS --", Event(LOSS)),
    ("-- END --", Note("end")),
    ("Monitoring terminated", Note("terminated")),
    ("Joined session keyring: 123456", Note("session", 123456)),
    ("", None),
])
def test_keyctl_line_kinds(line, want):
    assert clients.parse_keyctl_line(line + "\n") == want


def test_every_key_subtype_has_a_keyctl_line():
    assert list(clients.KEYCTL_KEY_FORMATS) == list(clients.KEY_SUBTYPES)
    for sub, fmt in clients.KEYCTL_KEY_FORMATS.items():
        line = fmt.replace("%u", "7", 1).replace("%u", "9")
        assert clients.parse_keyctl_line(line).subtype == sub


@pytest.mark.parametrize("line", [
    "856094046 updated", "856094046 upd 5", "444664923 link", "-5 upd", "upd 856094046",
    "NOTIFY[000]: ty=000001 sy=01 i=00000110", "856094046  upd", "-- LOSS", "gc 856094046",
    "keyctl_watch_key: Invalid argument",
])
def test_keyctl_refuses_a_line_it_does_not_print(line):
    with pytest.raises(ValueError, match=re.escape(repr(line))):
        clients.parse_keyctl_line(line)


def test_keyctl_output_with_its_ending():
    out = clients.parse_keyctl("444664923 clr\n-- LOSS --\n444664923 gc\n-- END --\n")
    assert out.events == [Event(KEY, "cleared", 444664923), Event(LOSS), Event(REMOVAL, key_id=444664923)]
    assert out.ended == "end"
    assert clients.parse_keyctl("1 upd\n").ended is None
    with pytest.raises(ValueError, match="line 2: "):
        clients.parse_keyctl("1 upd\nsomething else\n")


KEYCTL_BIN = "/usr/bin/keyctl"


@pytest.mark.skipif(not os.path.exists(KEYCTL_BIN), reason="no /usr/bin/keyctl (keyutils) on this host")
def test_keyctl_formats_are_those_of_the_installed_keyctl():
    """The format strings the parser is built from are in the keyctl binary itself, each one a
    whole string (keyutils 1.6.3: Debian bookworm): a printf format ending in a newline, or for a
    line without conversions the string the compiler gives puts() (printf("-- END --\\n"))."""
    with open(KEYCTL_BIN, "rb") as fh:
        binary = fh.read()
    formats = [*clients.KEYCTL_KEY_FORMATS.values(), clients.KEYCTL_REMOVAL_FORMAT,
               clients.KEYCTL_LOSS_LINE, clients.KEYCTL_END_LINE, clients.KEYCTL_TERMINATED_LINE,
               clients.KEYCTL_SESSION_FORMAT]
    missing = [f for f in formats if b"\0" + f.encode() + b"\n\0" not in binary
               and ("%" in f or b"\0" + f.encode() + b"\0" not in binary)]
    assert not missing, f"{KEYCTL_BIN} does not print {missing}"


# --- watch_test: every line kind ------------------------------------------------------------

def test_watch_test_line_kinds():
    text = ("read() = 56\n"
            "NOTIFY[000]: ty=000001 sy=02 i=00000310\n"
            "KEY 1a80f3b3 change=2[linked] aux=856094046\n"
            "NOTIFY[010]: ty=000000 sy=01 i=00000008\n"
            "-- LOSS --\n"
            "NOTIFY[018]: ty=000000 sy=00 i=00000210\n"
            "REMOVAL of watchpoint 00000002\n"
            "NOTIFY[028]: ty=000000 sy=05 i=00000008\n"
            "other meta record\n"
            "NOTIFY[030]: ty=000007 sy=00 i=00000108\n"
            "other type\n"
            "read() = 16\n"
            "NOTIFY[000]: ty=000001 sy=09 i=00000110\n"
            "KEY 00000005 change=9[(null)] aux=0\n"
            "-- END --\n")
    out = clients.parse_watch_test(text)
    assert out.events == [Event(KEY, "linked", 0x1A80F3B3, 856094046, 3), Event(LOSS, watch_id=0),
                          Event(REMOVAL, watch_id=2), Event(OTHER, "type-0.5", watch_id=0),
                          Event(OTHER, "type-7.0", watch_id=1), Event(KEY, "subtype-9", 5, 0, 1)]
    assert out.notes == [Note("read", 56), Note("read", 16), Note("end")]
    assert out.ended == "end"


@pytest.mark.parametrize("text, why", [
    ("KEY 1a80f3b3 change=2[linked] aux=0\n", "lacks its NOTIFY header"),
    ("NOTIFY[000]: ty=000001 sy=03 i=00000110\nKEY 1a80f3b3 change=2[linked] aux=0\n", "does not match"),
    ("NOTIFY[000]: ty=000001 sy=02 i=00000110\nKEY 1a80f3b3 change=2[unlinked] aux=0\n", "names subtype"),
    ("NOTIFY[000]: ty=000000 sy=00 i=00000110\nREMOVAL of watchpoint 00000002\n", "does not match"),
    ("NOTIFY[000]: ty=000001 sy=02 i=00000110\n856094046 link 5\n", "is not a line"),
])
def test_watch_test_refuses_inconsistent_output(text, why):
    with pytest.raises(ValueError, match=why):
        clients.parse_watch_test(text)


def test_watch_test_header_without_a_body_is_an_other_event():
    """watch_test exits after a header whose length is bad (the complaint goes to stderr)."""
    out = clients.parse_watch_test("read() = 16\nNOTIFY[000]: ty=000001 sy=01 i=00000105\n")
    assert out.events == [Event(OTHER, "type-1.1", watch_id=1)]


# --- wqh's records --------------------------------------------------------------------------

def test_wqh_records_normalized():
    records = uapi.decode(_wire([rec(LINKED, 7, R1, K), removal(255, K), uapi.LOSS_RECORD,
                                 uapi.Record(1, UPDATED, 12 | 2 << 8, b"\1\0\0\0"),  # short key record
                                 uapi.Record(5, 3, 8 | 1 << 8, b"")]))
    assert clients.from_records(records) == [
        Event(KEY, "linked", R1, K, 7), Event(REMOVAL, key_id=K, watch_id=255), Event(LOSS, watch_id=0),
        Event(OTHER, "type-1.1", watch_id=2), Event(OTHER, "type-5.3", watch_id=1)]


def test_keyctl_cannot_see_other_records():
    events = [Event(KEY, "updated", K, 0, 1), Event(OTHER, "type-1.1", watch_id=1)]
    assert clients.visible(clients.KEYCTL_WATCH, events) == events[:1]
    assert clients.visible(clients.WATCH_TEST, events) == events


# --- agreement on the scripted session ------------------------------------------------------

def test_keyctl_watch_agrees_with_wqh_on_the_scripted_session():
    sections = _sections(_fixture("keyctl-watch.txt"))
    assert sorted(sections) == sorted(WID)
    wqh = _wqh(WATCH_SCRIPT)
    for key, text in sections.items():
        out = clients.parse_keyctl(text, f"keyctl watch {key}")
        mine = [e for e in wqh if e.watch_id == WID[key]]
        assert mine and len(out.events) == len(mine)
        assert clients.compare(out.client, "scripted session", out.events, mine) == []
        assert out.events[-1] == Event(REMOVAL, key_id=key)  # the removal of watch 1 ends keyctl watch


def test_keyctl_watch_session_agrees_with_wqh_on_the_scripted_session():
    out = clients.parse_keyctl(_fixture("keyctl-watch-session.log"), clients.KEYCTL_WATCH_SESSION)
    wqh = _wqh(SESSION_SCRIPT)
    assert wqh and len(out.events) == len(wqh)
    assert clients.compare(out.client, "scripted session", out.events, clients.visible(out.client, wqh)) == []
    assert out.ended == "terminated"


def test_watch_test_agrees_with_wqh():
    S, U = 0x1A80F3B3, 0x2C3A9D01
    wqh = _wqh([("session", [rec(LINKED, 1, S, K), rec(LINKED, 2, U, K), rec(UNLINKED, 2, U, K),
                             rec(SETATTR, 1, S), rec(CLEARED, 1, S), uapi.LOSS_RECORD,
                             rec(INVALIDATED, 1, S), removal(1, S)])])
    out = clients.parse_watch_test(_fixture("watch_test.txt"))
    assert len(out.events) == len(wqh)
    assert clients.compare(clients.WATCH_TEST, "session", out.events, wqh) == []
    # watch_test shows the watch id: a record on the other watch is a disagreement.
    moved = [Event(e.kind, e.subtype, e.key_id, e.aux, 2 if e.watch_id == 1 else e.watch_id) for e in wqh]
    got = clients.compare(clients.WATCH_TEST, "session", out.events, moved)
    assert got and [(d.client_reading, d.wqh_reading) for d in got] == [
        (e, m) for e, m in zip(out.events, moved) if e.watch_id == 1]


# --- a tampered client output is a disagreement naming client, operation, both readings --------

TAMPER = [  # (client section, line, replacement ('' deletes), the client's reading, wqh's reading)
    (K, "856094046 upd", "856094047 upd",
     Event(KEY, "updated", 856094047), Event(KEY, "updated", K, 0, 3)),
    (K, "856094046 rev", "",
     None, Event(KEY, "revoked", K, 0, 3)),
    (K, "856094046 attr", "856094046 inv",
     Event(KEY, "invalidated", K), Event(KEY, "setattr", K, 0, 3)),
    (K, "856094046 attr", "856094046 attr\n856094046 upd",
     Event(KEY, "updated", K), None),
    (R2, "414952832 link 869410050", "414952832 link 869410051",
     Event(KEY, "linked", R2, 869410051), Event(KEY, "linked", R2, K2, 2)),
    (R1, "444664923 gc", "-- LOSS --",
     Event(LOSS), Event(REMOVAL, key_id=R1, watch_id=1)),
]


@pytest.mark.parametrize("key, line, new, client_reading, wqh_reading", TAMPER,
                         ids=["wrong-key-id", "missing-event", "wrong-subtype", "extra-event", "wrong-aux",
                              "loss-for-removal"])
def test_tampered_keyctl_watch_output_is_one_disagreement(key, line, new, client_reading, wqh_reading):
    text = _sections(_fixture("keyctl-watch.txt"))[key]
    assert text.count(line + "\n") == 1
    tampered = text.replace(line + "\n", new + "\n" if new else "")
    client = f"keyctl watch {key}"
    events = clients.parse_keyctl(tampered, client).events
    mine = [e for e in _wqh(WATCH_SCRIPT) if e.watch_id == WID[key]]
    got = clients.compare(client, "scripted session", events, mine)
    assert [(d.client, d.operation, d.client_reading, d.wqh_reading) for d in got] == \
        [(client, "scripted session", client_reading, wqh_reading)]
    msg = str(got[0])
    assert "\n" not in msg
    assert client in msg and "'scripted session'" in msg
    for reading in (client_reading, wqh_reading):
        assert (f"[{reading}]" if reading else "nothing") in msg


def test_tampered_session_log_per_operation():
    """One operation at a time, as the guest test compares: only the tampered one disagrees."""
    lines = _fixture("keyctl-watch-session.log").splitlines()
    lines[lines.index("414952832 clr")] = "414952832 rev"
    events = clients.parse_keyctl("\n".join(lines), clients.KEYCTL_WATCH_SESSION).events
    got, pos = [], 0
    for op, records in SESSION_SCRIPT:
        wqh = clients.from_records(records)
        got += clients.compare(clients.KEYCTL_WATCH_SESSION, op, events[pos:pos + len(wqh)], wqh)
        pos += len(wqh)
    assert [str(d) for d in got] == [
        "keyctl watch_session disagrees with wqh on 'clear R2' (event 1): keyctl watch_session read "
        "[key/revoked key=414952832], wqh read [key/cleared key=414952832 aux=0 watch=2]"]


def test_tampered_watch_test_watch_id():
    text = _fixture("watch_test.txt").replace("NOTIFY[000]: ty=000001 sy=07 i=00000110",
                                              "NOTIFY[000]: ty=000001 sy=07 i=00000210")
    S = 0x1A80F3B3
    got = clients.compare(clients.WATCH_TEST, "setperm S", clients.parse_watch_test(text).events[3:4],
                          clients.from_records([rec(SETATTR, 1, S)]))
    assert [(d.client_reading, d.wqh_reading) for d in got] == [
        (Event(KEY, "setattr", S, 0, 2), Event(KEY, "setattr", S, 0, 1))]


# --- compare's alignment --------------------------------------------------------------------

def test_compare_aligns_around_agreeing_events():
    a, b, c, d = (Event(KEY, "updated", n, 0, 1) for n in (1, 2, 3, 4))
    assert clients.compare("x", "op", [], []) == []
    # b missing and d extra: two disagreements, a and c still agree.
    got = clients.compare("x", "op", [a, c, d], [a, b, c])
    assert [(g.client_reading, g.wqh_reading, g.position) for g in got] == [(None, b, 2), (d, None, 3)]
    # Two wrong events in a row pair up in order.
    x, y = Event(KEY, "revoked", 9), Event(KEY, "cleared", 9)
    got = clients.compare("x", "op", [a, x, y, d], [a, b, c, d])
    assert [(g.client_reading, g.wqh_reading) for g in got] == [(x, b), (y, c)]


def test_a_field_the_client_does_not_show_is_not_compared():
    wqh = Event(KEY, "updated", 5, 77, 3)  # aux 77: keyctl never prints an update's aux
    assert clients.compare("keyctl watch", "op", [Event(KEY, "updated", 5)], [wqh]) == []
    assert clients.compare("keyctl watch", "op", [Event(KEY, "updated", 5, 0)], [wqh]) != []
    assert clients.compare("keyctl watch", "op", [Event(REMOVAL, key_id=5)], [Event(LOSS, watch_id=0)]) != []


# --- recorded in a guest: tests/data/clients/recorded/ ---------------------------------------
# Written by guest-tests/test_clients.py (record()) on Debian's 6.1.192 under `wqh run`
# (vm*/guest/clients/*.json): each client's lines as it printed them, wqh's events per
# operation of the scripted session.

RECORDED = DATA / "clients" / "recorded"


def _recorded(name):
    import json
    d = json.loads((RECORDED / name).read_text())
    ops = [(o["operation"], [clients.Event(**e) for e in o["wqh"]]) for o in d["operations"]]
    return d, ops


def _session_disagreements(d, ops, lines_of=lambda c, lines: lines):
    """Each recorded client against wqh's events of the whole session (its watch id's only for a
    `keyctl watch KEY`)."""
    out = []
    for client, rec in d["clients"].items():
        kind = clients.KEYCTL_WATCH_SESSION if "watch_session" in client else clients.KEYCTL_WATCH
        text = "\n".join(lines_of(client, list(rec["lines"])))
        mine = [e for _, evs in ops for e in evs if rec["watch_id"] in (None, e.watch_id)]
        got = clients.parse_keyctl(text, kind).events
        out += clients.compare(client, "the scripted session", got, clients.visible(kind, mine))
    return out


@pytest.mark.parametrize("name", ["keyctl-watch.json", "keyctl-watch-session.json"])
def test_recorded_clients_agree_with_wqh_on_the_whole_session(name):
    d, ops = _recorded(name)
    assert d["kernel"].startswith("6.1.") and len(ops) >= 10
    assert sum(len(r["lines"]) for r in d["clients"].values()) >= 12
    assert _session_disagreements(d, ops) == []


@pytest.mark.parametrize("tamper, says", [
    (lambda ls: [ls[0].replace(ls[0].split()[0], "12345", 1)] + ls[1:], "key=12345"),  # wrong id
    (lambda ls: ls[1:], "read nothing"),  # an event missing
    (lambda ls: [ls[0].replace(" link ", " unlk ", 1)] + ls[1:], "unlinked"),  # wrong subtype
    (lambda ls: ls[:1] + ls, "wqh read nothing"),  # an event twice
])
def test_a_tampered_recording_is_a_disagreement_naming_client_and_readings(tamper, says):
    d, ops = _recorded("keyctl-watch-session.json")
    (client,) = d["clients"]
    found = _session_disagreements(d, ops, lambda c, ls: tamper(ls))
    assert found, "the tampered output went unnoticed"
    text = "\n".join(map(str, found))
    assert client in text and "the scripted session" in text and says in text, text
