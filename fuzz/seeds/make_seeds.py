#!/usr/bin/env python3
"""Writes the seed inputs under fuzz/seeds/<target>/: valid encodings, byte for byte as in
docs/PROTOCOL.md, so the fuzzer starts from the accepting paths instead of finding the marker,
version and kind bytes on its own. Run it again after a wire-format change:

    python3 fuzz/seeds/make_seeds.py
"""

import struct
from pathlib import Path

HERE = Path(__file__).resolve().parent
MARKER, VERSION = 0xF5, 1
CONN, TOKEN = 1, 7  # the ids the `connection` target uses


def header(kind, flags=0, conn=CONN):
    return struct.pack(">BBBBQ", MARKER, VERSION, kind, flags, conn)


def hello(nonce):
    return (header(1, conn=0) + struct.pack(">Q", nonce)).ljust(48, b"\0")


def welcome(nonce, token=TOKEN, keepalive_ms=10_000, idle_ms=30_000):
    return header(2) + struct.pack(">QQII", nonce, token, keepalive_ms, idle_ms)


def segment(seq, payload, first=True, last=True):
    return struct.pack(">IBH", seq, int(first) | int(last) << 1, len(payload)) + payload


def data(next_expected=0, sack=0, segments=(), ack_requested=False, token=TOKEN):
    flags = 0b10 if ack_requested else 0
    return header(3, flags) + struct.pack(">QIQ", token, next_expected, sack) + b"".join(segments)


def close(reason=0, token=TOKEN):
    return header(4) + struct.pack(">QB", token, reason)


def str8(s):
    b = s.encode()
    return bytes([len(b)]) + b


def text(s):
    b = s.encode()
    return struct.pack(">I", len(b)) + b


CLIENT = {
    "nick": b"\x01" + str8("alice"),
    "join": b"\x02" + str8("#rust"),
    "part": b"\x03" + str8("#rust"),
    "say": b"\x04" + str8("#rust") + text("hello, world"),
    "action": b"\x05" + str8("#rust") + text("waves"),
    "private": b"\x06" + str8("bob") + text("psst"),
    "who": b"\x07" + str8("#rust"),
    "topic_ask": b"\x08" + str8("#rust") + b"\x00",
    "topic_set": b"\x08" + str8("#rust") + b"\x01" + text("ownership"),
}

SERVER = {
    "nick_set": b"\x81" + str8("alice"),
    "nick_changed": b"\x82" + str8("alice") + str8("alicia"),
    "joined": b"\x83" + str8("#rust") + str8("bob"),
    "left": b"\x84" + str8("#rust") + str8("bob") + str8("quit"),
    "message": b"\x85" + str8("#rust") + str8("bob") + b"\x00\x00" + text("hi \u00e9\u65e5"),
    "message_history_action": b"\x85" + str8("#rust") + str8("bob") + b"\x01\x01" + text("waves"),
    "private": b"\x86" + str8("bob") + str8("alice") + text("psst"),
    "names": b"\x87" + str8("#rust") + struct.pack(">H", 3) + str8("a") + str8("bob") + str8("c"),
    "topic": b"\x88" + str8("#rust") + text("ownership") + str8("bob"),
    "error": b"\x89\x01" + text("nick taken"),
}

PACKETS = {
    "hello": hello(0x0123456789ABCDEF),
    "welcome": welcome(0x0123456789ABCDEF),
    "data_ack": data(next_expected=3, sack=0b101),
    "data_probe": data(ack_requested=True),
    "data_segments": data(
        next_expected=1,
        segments=[
            segment(0, CLIENT["say"]),
            segment(1, b"\x04" + str8("#r"), last=False),
            segment(2, text("split"), first=False),
        ],
    ),
    "close": close(reason=4),
}

TEXT = {
    "plain": b"hello",
    "nc_newline": b"hello\n",
    "crlf_utf8": "caf\u00e9 \U0001F44D\r\n".encode(),
    "escape": b"\x1b[2J\x1b[Hpwned\x07",
    "osc_title": b"\x1b]0;owned\x07",
    "c1_csi": "\u009b2J".encode(),
    "bidi": "abc\u202efed\u2066x\u2069".encode(),
    "invalid_utf8": b"a\xffb\xe2\x82",
    "del_tab": b"tab\there\x7f",
}


def op_send(side, payload, reps=0):
    """Ops 3 (A) / 5 (B): len, reps, bytes (see fuzz_targets/connection.rs)."""
    assert len(payload) < 256
    return bytes([3 if side == "a" else 5, len(payload), reps]) + payload


def op_raw(datagram):
    assert len(datagram) < 256
    return bytes([0, len(datagram)]) + datagram


EXCHANGE = bytes([12, 0])  # everything in flight, no loss
TIMER = bytes([13])  # jump to the next deadline

CONNECTION = {
    "chat": b"\x00"
    + op_send("a", b"hello")
    + EXCHANGE
    + op_send("b", b"hi there")
    + EXCHANGE
    + TIMER
    + EXCHANGE
    + bytes([6, 200])
    + TIMER
    + EXCHANGE,
    "big_lossy": b"\x80"
    + op_send("a", b"x" * 255, reps=63)
    + op_send("a", b"y" * 100, reps=7)
    + bytes([12, 0x55])
    + TIMER
    + bytes([12, 0x0F])
    + TIMER
    + EXCHANGE
    + TIMER
    + EXCHANGE,
    "reorder_dup": b"\x02"
    + op_send("a", b"one")
    + op_send("a", b"two")
    + op_send("a", b"three")
    + bytes([8, 4, 9, 6, 10, 0, 8, 0, 11, 2])  # newest first, a copy of the oldest, oldest, oldest, one dropped
    + EXCHANGE
    + TIMER
    + EXCHANGE,
    "forged": b"\x00"
    + op_send("a", b"hello")
    + op_raw(data(next_expected=1, segments=[segment(0, CLIENT["nick"])]))
    + bytes([2, 0b0000_0100, 1, 0, 0, 3, 2]) + b"hi"  # forged Data: ack 1, one segment
    + EXCHANGE
    + op_raw(close(reason=1)),
    "idle_timeout": b"\x01"
    + op_send("a", b"lost")
    + bytes([9, 2])  # drop it
    + bytes([7, 255]) * 2
    + TIMER,
    "close": b"\x00"
    + op_send("a", b"bye")
    + EXCHANGE
    + bytes([14, 0])
    + EXCHANGE
    + TIMER
    + EXCHANGE,
}

# room_output (fuzz_targets/room_output.rs): op 0 = guest, len16, pattern; op 1 = member
# command; op 2 = a late joiner; op 4 = the clock advances step * 20 ms.
def room_guest(guest, length, pattern):
    return bytes([0, guest]) + length.to_bytes(2, "big") + bytes([len(pattern) - 1]) + pattern


def room_command(member, kind, name, half_length, pattern):
    return (bytes([1, member, kind, len(name)]) + name + half_length.to_bytes(2, "big")
            + bytes([len(pattern) - 1]) + pattern)


ROOM_OUTPUT = {
    # 22,000 bytes that are not UTF-8: 66,000 bytes of U+FFFD once decoded.
    "invalid_guest_line": room_guest(1, 22_000, b"\xff") + bytes([4, 50, 2, 4, 100]),
    "long_say_and_topic": room_command(0, 0, b"", 32_768, "\u00e9".encode())
    + room_command(1, 3, b"", 30_000, b"ab")
    + bytes([4, 50, 2, 4, 100]),
    "private_and_names": room_command(2, 2, b"m0", 100, b"hi") + room_command(0, 6, b"lobby", 0, b"x")
    + bytes([4, 50]),
}


def main():
    for target, seeds in {
        "decode_packet": PACKETS,
        "decode_messages": {**{f"client_{k}": v for k, v in CLIENT.items()},
                            **{f"server_{k}": v for k, v in SERVER.items()}},
        "text": TEXT,
        "connection": CONNECTION,
        "room_output": ROOM_OUTPUT,
    }.items():
        out = HERE / target
        out.mkdir(exist_ok=True)
        for name, content in seeds.items():
            (out / name).write_bytes(content)
        print(f"{target}: {len(seeds)} seeds in {out}")


if __name__ == "__main__":
    main()
