"""A real DNS server on the loopback (dnslib, UDP, a free port) answering from a dict of records:
what `syndicate check --dns` is tested against."""

from __future__ import annotations

from dnslib import AAAA, MX, QTYPE, RCODE, RR, TXT, A, DNSLabel
from dnslib.server import BaseResolver, DNSLogger, DNSServer


class _Records(BaseResolver):
    def __init__(self, records: dict[tuple[str, str], list]):
        self.records = {(DNSLabel(name), rtype): values for (name, rtype), values in records.items()}
        self.names = {name for name, _ in self.records}
        self.queries: list[tuple[str, str]] = []

    def resolve(self, request, handler):
        reply = request.reply()
        name, rtype = request.q.qname, QTYPE[request.q.qtype]
        self.queries.append((str(name), rtype))
        for value in self.records.get((name, rtype), []):
            reply.add_answer(RR(name, getattr(QTYPE, rtype), rdata=_rdata(rtype, value), ttl=60))
        if not reply.rr and name not in self.names:
            reply.header.rcode = RCODE.NXDOMAIN
        return reply


def _rdata(rtype: str, value):
    if rtype == "TXT":  # long values as several 255-byte strings, as real zones hold DKIM keys
        return TXT([value[i:i + 255] for i in range(0, len(value), 255)])
    return {"A": A, "AAAA": AAAA, "MX": lambda v: MX(v, 10)}[rtype](value)


class DnsServer:
    """``with DnsServer({("example.org", "TXT"): ["v=spf1 -all"]}) as dns: dns.address``"""

    def __init__(self, records: dict[tuple[str, str], list]):
        self.resolver = _Records(records)
        self.server = DNSServer(self.resolver, port=0, address="127.0.0.1",
                                logger=DNSLogger(log="-request,-reply,-truncated,-error,-recv,-send,-data"))

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.server.server.server_address[1]}"

    def __enter__(self) -> DnsServer:
        self.server.start_thread()
        return self

    def __exit__(self, *exc) -> None:
        self.server.stop()
