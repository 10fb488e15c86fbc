"""DNS messages on the wire (RFC 1035 §4, EDNS0 of RFC 6891): encode a query, decode a reply.

Pure functions on bytes.  Only what rdnsgate asks for is decoded: A, AAAA,
PTR, CNAME, NS, MX and SOA; other records are skipped.  Names come out in
presentation form, lower case, without the trailing dot; bytes that are not
printable ASCII, dots and backslashes inside a label are escaped as
``\\DDD``, so a PTR "name" holding ``<script>`` or a space is still one
inspectable string and never a valid host name.

Why not dnspython's codec: measured here, its `from_wire` took ~110 µs per
reply and `make_query().to_wire()` ~100 µs, a ceiling of ~2,200 FCrDNS
checks/s; this codec takes ~6 µs and ~1.5 µs (docs/design.md).  The tests
hold it to dnspython as an oracle.
"""

from __future__ import annotations

import ipaddress
import re
import struct
from dataclasses import dataclass
from typing import NamedTuple

TYPES = {"A": 1, "NS": 2, "CNAME": 5, "SOA": 6, "PTR": 12, "MX": 15, "TXT": 16, "AAAA": 28}
TYPE_NAMES = {value: key for key, value in TYPES.items()}
CLASS_IN = 1
TYPE_OPT = 41

RCODE_NOERROR, RCODE_FORMERR, RCODE_SERVFAIL, RCODE_NXDOMAIN, RCODE_NOTIMP, RCODE_REFUSED = 0, 1, 2, 3, 4, 5

FLAG_QR = 0x8000
FLAG_TC = 0x0200
FLAG_RD = 0x0100

_HEADER = struct.Struct("!6H")
_QTAIL = struct.Struct("!HH")
_RR = struct.Struct("!HHIH")
_SOA_TAIL = struct.Struct("!5I")
_MAX_POINTERS = 64
_SAFE_LABEL = re.compile(rb"[A-Za-z0-9_-]+\Z")
_SAFE_NAME = re.compile(rb"[A-Za-z0-9_.-]*\Z")
_UNCHANGED = re.compile(r"[a-z0-9_-]{1,63}(?:\.[a-z0-9_-]{1,63}){0,126}\Z")
_LENGTH = [bytes([n]) for n in range(64)]
_OCTET_LABELS = [_LENGTH[len(str(n))] + str(n).encode("ascii") for n in range(256)]  # the labels of in-addr.arpa
_IN_ADDR_ARPA_PTR = b"\x07in-addr\x04arpa\x00" + _QTAIL.pack(TYPES["PTR"], CLASS_IN)  # the name's end, the tail


class WireError(ValueError):
    """The bytes are not a DNS message this codec can read."""


@dataclass(frozen=True, slots=True)
class SOA:
    mname: str
    rname: str
    serial: int
    minimum: int


RData = str | tuple[int, str] | SOA | None


class RR(NamedTuple):
    name: str
    rtype: int
    ttl: int
    data: RData  # str: address or name; (preference, exchange) for MX; SOA; None if not decoded


@dataclass(slots=True)
class Reply:
    qid: int
    flags: int
    rcode: int
    qname: str
    qtype: int
    answer: tuple[RR, ...]
    authority: tuple[RR, ...]

    @property
    def truncated(self) -> bool:
        return bool(self.flags & FLAG_TC)


# -- names ---------------------------------------------------------------------


def _escape_label(raw: bytes) -> str:
    if _SAFE_LABEL.match(raw):
        return raw.decode("ascii").lower()
    out = []
    for byte in raw.lower():
        if byte in (0x2E, 0x5C) or not 0x21 <= byte <= 0x7E:
            out.append(f"\\{byte:03d}")
        else:
            out.append(chr(byte))
    return "".join(out)


def _unescape_label(label: str) -> bytes:
    if "\\" not in label:
        return label.encode("ascii")
    out = bytearray()
    i = 0
    while i < len(label):
        char = label[i]
        if char == "\\":
            digits = label[i + 1 : i + 4]
            if len(digits) == 3 and digits.isascii() and digits.isdigit():
                if int(digits) > 255:  # RFC 1035 §5.1: \DDD is one octet
                    raise WireError(f"escape \\{digits} in {label!r} is not an octet (0-255)")
                out.append(int(digits))
                i += 4
                continue
            out += label[i + 1].encode("ascii")
            i += 2
            continue
        out += char.encode("ascii")
        i += 1
    return bytes(out)


def _split_labels(name: str) -> list[str]:
    if "\\" not in name:
        return name.split(".")
    labels, current, i = [], [], 0
    while i < len(name):
        if name[i] == "\\":
            current.append(name[i : i + 2] if not name[i + 1 : i + 4].isdigit() else name[i : i + 4])
            i += len(current[-1])
        elif name[i] == ".":
            labels.append("".join(current))
            current = []
            i += 1
        else:
            current.append(name[i])
            i += 1
    labels.append("".join(current))
    return labels


def encode_name(name: str) -> bytes:
    """Wire form of a presentation-form name (trailing dot optional)."""
    if name in ("", "."):
        return b"\x00"
    if name.endswith(".") and not name.endswith("\\."):
        name = name[:-1]
    if name.isascii():
        raw = name.encode("ascii")
        labels = raw.split(b".")
        if len(raw) <= 253 and b"\\" not in raw and min(map(len, labels)) and max(map(len, labels)) <= 63:
            return b"".join([_LENGTH[len(label)] + label for label in labels]) + b"\x00"  # no escapes, 1-63 bytes
    out = bytearray()
    try:
        for label in _split_labels(name):
            raw = _unescape_label(label)
            if not 0 < len(raw) <= 63:
                raise WireError(f"label of {len(raw)} bytes in {name!r}")
            out.append(len(raw))
            out += raw
    except (UnicodeEncodeError, IndexError) as exc:
        raise WireError(f"cannot encode {name!r}: {exc}") from exc
    out.append(0)
    if len(out) > 255:
        raise WireError(f"name longer than 255 bytes: {name[:40]!r}...")
    return bytes(out)


def _read_name(msg: bytes, offset: int) -> tuple[str, int]:
    """Decode the name at `offset`; return it and the offset after it."""
    labels: list[bytes] = []
    end = -1
    pointers = 0
    length = 0
    size = len(msg)
    while True:
        if offset >= size:
            raise WireError("name runs past the end of the message")
        count = msg[offset]
        if count >= 0xC0:
            if offset + 1 >= size:
                raise WireError("truncated compression pointer")
            target = ((count & 0x3F) << 8) | msg[offset + 1]
            if end < 0:
                end = offset + 2
            pointers += 1
            if pointers > _MAX_POINTERS or target >= offset:
                raise WireError("compression pointer loop")
            offset = target
            continue
        if count >= 0x40:
            raise WireError(f"unsupported label type 0x{count:02x}")
        offset += 1
        if count == 0:
            break
        if offset + count > size:
            raise WireError("label runs past the end of the message")
        length += count + 1
        if length > 255:
            raise WireError("name longer than 255 bytes")
        labels.append(msg[offset : offset + count])
        offset += count
    after = end if end >= 0 else offset
    joined = b".".join(labels)
    # Fast path: only LDH/underscore bytes, and no label holding a dot itself.
    if _SAFE_NAME.match(joined) and joined.count(b".") == len(labels) - 1:
        return joined.decode("ascii").lower(), after
    return ".".join(_escape_label(label) for label in labels), after


# -- messages --------------------------------------------------------------------


def encode_question(qname: str, qtype: int) -> bytes:
    """The question section for `qname`/`qtype` (class IN); raises WireError for a bad name."""
    return encode_name(qname) + _QTAIL.pack(qtype, CLASS_IN)


def reverse_question_v4(packed: bytes) -> bytes:
    """`encode_question` of the in-addr.arpa name of the IPv4 address `packed` (4 bytes), type PTR: four
    labels from a table instead of the name's text encoded (a property test holds the two together)."""
    a, b, c, d = packed
    return _OCTET_LABELS[d] + _OCTET_LABELS[c] + _OCTET_LABELS[b] + _OCTET_LABELS[a] + _IN_ADDR_ARPA_PTR


def encode_query(qid: int, question: bytes, udp_size: int = 1232) -> bytes:
    """A recursive query for an encoded question; with EDNS0 advertising `udp_size` unless it is 0."""
    if udp_size:
        opt = b"\x00" + struct.pack("!HHIH", TYPE_OPT, udp_size, 0, 0)
        return _HEADER.pack(qid, FLAG_RD, 1, 0, 0, 1) + question + opt
    return _HEADER.pack(qid, FLAG_RD, 1, 0, 0, 0) + question


def question_key(msg: bytes) -> tuple[int, bytes]:
    """(id, question bytes in lower case) of a query or reply, to match a reply to its query.

    A reply repeats its query's question (RFC 1035 §4.1.2), so the raw bytes
    compare without decoding; raises WireError for a message without exactly
    one uncompressed question.
    """
    size = len(msg)
    if size < 17:
        raise WireError("shorter than a DNS header and question")
    if msg[4] != 0 or msg[5] != 1:
        raise WireError("not a message with one question")
    offset = 12
    while True:
        count = msg[offset]
        if count == 0:
            break
        if count >= 0x40:
            raise WireError("compressed or extended label in the question")
        offset += count + 1
        if offset >= size:
            raise WireError("question runs past the end of the message")
    end = offset + 5
    if end > size:
        raise WireError("truncated question")
    return (msg[0] << 8) | msg[1], msg[12:end].lower()


def _rdata(msg: bytes, offset: int, end: int, rtype: int) -> RData:
    """The data of a class IN record of `rtype` at msg[offset:end]; None for a type not decoded here."""
    if rtype == 1:
        if end - offset != 4:
            raise WireError("A record of wrong length")
        return f"{msg[offset]}.{msg[offset + 1]}.{msg[offset + 2]}.{msg[offset + 3]}"
    if rtype == 28:
        if end - offset != 16:
            raise WireError("AAAA record of wrong length")
        return str(ipaddress.IPv6Address(msg[offset:end]))
    if rtype in (12, 5, 2):
        name, after = _read_name(msg, offset)
        if after != end:
            raise WireError("name record length mismatch")
        return name
    if rtype == 15:
        if end - offset < 3:
            raise WireError("MX record too short")
        exchange, after = _read_name(msg, offset + 2)
        if after != end:
            raise WireError("MX record length mismatch")
        return (struct.unpack_from("!H", msg, offset)[0], exchange)
    if rtype == 6:
        mname, after = _read_name(msg, offset)
        rname, after = _read_name(msg, after)
        if after + 20 != end:
            raise WireError("SOA record length mismatch")
        serial, _refresh, _retry, _expire, minimum = _SOA_TAIL.unpack_from(msg, after)
        return SOA(mname, rname, serial, minimum)
    return None


def _read_rrs(msg: bytes, offset: int, count: int, qname: str) -> tuple[list[RR], int]:
    records = []
    size = len(msg)
    for _ in range(count):
        if offset + 1 < size and msg[offset] == 0xC0 and msg[offset + 1] == 12:
            name, offset = qname, offset + 2  # a pointer to the question's name
        else:
            name, offset = _read_name(msg, offset)
        if offset + 10 > size:
            raise WireError("truncated resource record")
        rtype, rclass, ttl, rdlength = _RR.unpack_from(msg, offset)
        offset += 10
        end = offset + rdlength
        if end > size:
            raise WireError("record data runs past the end of the message")
        data = _rdata(msg, offset, end, rtype) if rclass == CLASS_IN else None
        records.append(RR(name, rtype, ttl & 0x7FFFFFFF, data))  # TTL: RFC 2181 §8
        offset = end
    return records, offset


def only_record(msg: bytes, offset: int, rtype: int) -> RData:
    """The data of the one record of a reply that is just that, without decoding the reply; else None.

    "Just that": NOERROR, not truncated, one answer and no authority records, the answer of class IN and
    type `rtype`, owned by the question's name (a pointer to it), its data well formed.  `offset` is where
    the answer section begins (12 + the length of the question as asked).  `decode_reply` of such a reply
    gives one answer `RR` with this data, named as the question (a property test holds the two together);
    for any other reply (None) the caller decodes it.
    """
    if msg[3] & 0x0F or msg[2] & 0x02 or msg[6:10] != b"\x00\x01\x00\x00" or msg[offset : offset + 2] != b"\xc0\x0c":
        return None
    start = offset + 12
    if start > len(msg):
        return None
    found, rclass, _ttl, rdlength = _RR.unpack_from(msg, offset + 2)
    end = start + rdlength
    if found != rtype or rclass != CLASS_IN or end > len(msg):
        return None
    try:
        return _rdata(msg, start, end, rtype)
    except WireError:
        return None


def decodes_unchanged(name: str) -> bool:
    """True when `name` is lower-case letters, digits, ``-`` and ``_`` in labels of 1-63: its wire form
    decodes back to `name` itself, so a reply whose question is that wire form need not be read for it."""
    return len(name) <= 253 and _UNCHANGED.match(name) is not None


def decode_reply(msg: bytes, asked: str | None = None) -> Reply:
    """Decode a whole reply (answer and authority sections); raises WireError.

    `asked`: the question's name, when the caller has matched the reply's question byte for byte to
    its own and `decodes_unchanged(asked)`; the question's name is then not read again.
    """
    if len(msg) < 12:
        raise WireError("shorter than a DNS header")
    qid, flags, qdcount, ancount, nscount, _arcount = _HEADER.unpack_from(msg)
    if not flags & FLAG_QR:
        raise WireError("not a reply")
    if qdcount != 1:
        raise WireError(f"reply holds {qdcount} questions")
    if asked is not None:
        qname, offset = asked, 12 + len(asked) + 2  # a length byte before each label, the root after
    else:
        qname, offset = _read_name(msg, 12)
    if offset + 4 > len(msg):
        raise WireError("truncated question")
    qtype, _ = _QTAIL.unpack_from(msg, offset)
    offset += 4
    if flags & FLAG_TC:
        return Reply(qid, flags, flags & 0xF, qname, qtype, (), ())
    answer, offset = _read_rrs(msg, offset, ancount, qname)
    authority, offset = _read_rrs(msg, offset, nscount, qname)
    return Reply(qid, flags, flags & 0xF, qname, qtype, tuple(answer), tuple(authority))
