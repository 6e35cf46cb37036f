"""A sending domain's DNS: may receivers trust mail From it? (``syndicate check --dns``)

For every email channel's From domain, three records decide whether Gmail, Yahoo and others
accept the newsletter (their 2024 bulk-sender rules ask for all three):

* SPF (RFC 7208), on the return-path domain (the envelope sender: ``return_path``, else
  ``envelope_from``, else the From address): a ``v=spf1`` record exists, and for SMTP it
  permits the ``host``'s addresses. The evaluation is a small one (``ip4``, ``ip6``, ``a``,
  ``mx``, ``include``, ``redirect``, ``all``); a record using macros, ``exists`` or ``ptr``, or a
  lookup that fails, is reported as "can't tell", never guessed.
* DKIM (RFC 6376): a TXT at ``SELECTOR._domainkey.DOMAIN`` whose ``p=`` is the public half of
  the configured key (SMTP; the API providers sign with their own keys, set up in their
  domain authentication).
* DMARC (RFC 7489): ``_dmarc.DOMAIN`` (or its organizational domain) with a ``p=`` policy, and
  alignment: the From domain matches the DKIM ``d=`` or the return-path domain (relaxed: the
  same organizational domain, approximated by the last two labels (three under a two-letter
  country code's ``co``/``com``/``org``/...), strict with ``adkim=s`` / ``aspf=s``).

Each finding that is not OK carries the exact record to publish. Lookups go to
``deliverability.dns_nameservers`` when set (tests run a DNS server on the loopback).
"""

from __future__ import annotations

import ipaddress
from dataclasses import dataclass, field
from email.utils import parseaddr

import dns.exception
import dns.nameserver
import dns.resolver

from syndicate.email import dkim
from syndicate.render.payloads import from_header
from syndicate.settings import Settings, SettingsError, secret

# What each API provider's SPF include is (their return path is their own domain unless a
# custom one is set up; the include matters for that custom return path).
PROVIDER_SPF = {"sendgrid": "sendgrid.net", "sendgrid_singlesend": "sendgrid.net", "mailgun": "mailgun.org",
                "postmark": "spf.mtasv.net", "ses": "amazonses.com", "mailchimp": "servers.mcsv.net"}
LOOKUP_LIMIT = 10  # RFC 7208 4.6.4: DNS-querying terms one SPF evaluation may use
_SLDS = {"co", "com", "org", "net", "ac", "gov", "edu", "or", "ne", "go"}

OK, WARN, FAIL, UNKNOWN = "ok", "warn", "fail", "can't tell"


class LookupFailed(Exception):
    """The DNS did not answer (timeout, SERVFAIL): absence is not proven."""


@dataclass
class Finding:
    domain: str
    check: str  # SPF | DKIM | DMARC | alignment
    status: str  # OK, WARN, FAIL or UNKNOWN
    detail: str
    add: str | None = None  # the record to publish: 'NAME. TXT "..."'


@dataclass
class Sender:
    """One email channel as DNS sees it."""

    channel: str
    provider: str
    from_domain: str
    return_domain: str
    host: str | None = None  # SMTP
    selector: str | None = None
    dkim_domain: str | None = None
    key: bytes | None = None
    key_problem: str | None = None


@dataclass
class Domain:
    name: str
    senders: list[Sender] = field(default_factory=list)


# ---------------------------------------------------------------------------- DNS


class Dns:
    def __init__(self, nameservers: list[str] | None = None, lifetime: float = 5.0):
        if nameservers:
            self.resolver = dns.resolver.Resolver(configure=False)
            self.resolver.nameservers = [_nameserver(n) for n in nameservers]
        else:
            self.resolver = dns.resolver.Resolver()
        self.resolver.lifetime = lifetime

    def query(self, name: str, rdtype: str) -> list:
        try:
            return list(self.resolver.resolve(name, rdtype, search=False))
        except (dns.resolver.NXDOMAIN, dns.resolver.NoAnswer):
            return []
        except (dns.exception.Timeout, dns.resolver.NoNameservers, dns.resolver.NoRootSOA) as exc:
            raise LookupFailed(f"{name} {rdtype}: {type(exc).__name__}") from None

    def txt(self, name: str) -> list[str]:
        return [b"".join(r.strings).decode("utf-8", "replace") for r in self.query(name, "TXT")]

    def addresses(self, name: str) -> list[str]:
        try:
            return [str(ipaddress.ip_address(name))]
        except ValueError:
            pass
        return [r.address for t in ("A", "AAAA") for r in self.query(name, t)]


def _nameserver(value: str) -> dns.nameserver.Do53Nameserver:
    host, port = value, 53
    if value.count(":") == 1:  # "127.0.0.1:5353"; a bare IPv6 address has more colons
        host, _, number = value.partition(":")
        port = int(number)
    elif value.startswith("[") and "]:" in value:
        host, _, number = value[1:].partition("]:")
        port = int(number)
    return dns.nameserver.Do53Nameserver(host, port)


# ---------------------------------------------------------------------------- what is sent


def senders(settings: Settings) -> list[Domain]:
    """Every enabled email channel, grouped by From domain."""
    domains: dict[str, Domain] = {}
    for name, channel in settings.enabled_channels().items():
        if channel.kind != "email" or channel.provider == "outbox":
            continue
        address = parseaddr(from_header(channel, settings))[1]
        from_domain = address.rpartition("@")[2].lower()
        options = channel.options
        envelope = options.get("return_path") or options.get("envelope_from") or address
        sender = Sender(name, channel.provider, from_domain, envelope.rpartition("@")[2].lower())
        if channel.provider == "smtp":
            sender.host = options.get("host")
            sender.selector = options.get("dkim_selector")
            sender.dkim_domain = (options.get("dkim_domain") or from_domain).lower()
            if sender.selector:
                try:
                    sender.key = dkim.read_key(secret(options.get("dkim_private_key_env"),
                                                      f"channel {name!r} (dkim_private_key_env)"))
                except (SettingsError, dkim.DkimKeyError) as exc:
                    sender.key_problem = str(exc)
        domains.setdefault(from_domain, Domain(from_domain)).senders.append(sender)
    return list(domains.values())


def check(settings: Settings, resolver: Dns | None = None) -> list[Finding]:
    resolver = resolver or Dns(settings.deliverability.dns_nameservers)
    findings: list[Finding] = []
    for domain in senders(settings):
        for sender in domain.senders:
            findings += _guarded(sender.return_domain, "SPF", lambda s=sender: _spf(resolver, s))
            findings += _guarded(sender.dkim_domain or domain.name, "DKIM", lambda s=sender: _dkim(resolver, s))
        findings += _guarded(domain.name, "DMARC", lambda d=domain: _dmarc(resolver, d))
    return _unique(findings)


def _guarded(domain: str, what: str, run) -> list[Finding]:
    try:
        return run()
    except LookupFailed as exc:
        return [Finding(domain, what, UNKNOWN, f"the DNS did not answer ({exc})")]


def _unique(findings: list[Finding]) -> list[Finding]:
    seen, out = set(), []
    for f in findings:
        key = (f.domain, f.check, f.status, f.detail)
        if key not in seen:
            seen.add(key)
            out.append(f)
    return out


# ---------------------------------------------------------------------------- SPF


def _spf(resolver: Dns, sender: Sender) -> list[Finding]:
    domain = sender.return_domain
    where = f"channel {sender.channel} ({sender.provider})"
    records = [t for t in resolver.txt(domain) if t.lower().startswith("v=spf1")]
    if sender.provider == "smtp":
        ips = resolver.addresses(sender.host) if sender.host else []
        wanted = " ".join(_mechanism(ip) for ip in ips) or f"a:{sender.host}"
    else:
        include = PROVIDER_SPF.get(sender.provider)
        wanted = f"include:{include}" if include else ""
    if not records:
        return [Finding(domain, "SPF", FAIL, f"no SPF record ({where} sends with return path @{domain})",
                        add=_record(domain, " ".join(p for p in ("v=spf1", wanted, "~all") if p)))]
    if len(records) > 1:
        return [Finding(domain, "SPF", FAIL, f"{len(records)} SPF records: receivers treat that as an error; "
                                             "merge them into one", add=None)]
    record = records[0]
    if sender.provider != "smtp":
        if not wanted or wanted.split(":", 1)[1] in record:
            return [Finding(domain, "SPF", OK, f"{record!r} ({where})")]
        return [Finding(domain, "SPF", WARN, f"{record!r} does not include {wanted.split(':', 1)[1]}; needed only "
                                             f"when {sender.provider} sends with a return path at {domain}",
                        add=_record(domain, _with_terms(record, wanted)))]
    if not ips:
        return [Finding(domain, "SPF", UNKNOWN, f"{record!r} exists, but {sender.host!r} has no address to "
                                                "check it against")]
    verdicts = {ip: _permits(resolver, domain, ipaddress.ip_address(ip), [LOOKUP_LIMIT]) for ip in ips}
    refused = [ip for ip, v in verdicts.items() if v is False]
    unsure = [ip for ip, v in verdicts.items() if v is None]
    if refused:
        return [Finding(domain, "SPF", FAIL, f"{record!r} does not permit {sender.host} "
                                             f"({', '.join(refused)}), which {where} sends through",
                        add=_record(domain, _with_terms(record, " ".join(_mechanism(ip) for ip in refused))))]
    if unsure:
        return [Finding(domain, "SPF", UNKNOWN, f"{record!r}: can't tell whether it permits {', '.join(unsure)} "
                                                "(macros, exists, ptr, too many lookups, or a lookup failed)")]
    return [Finding(domain, "SPF", OK, f"{record!r} permits {sender.host} ({', '.join(ips)})")]


def _mechanism(ip: str) -> str:
    return f"ip{ipaddress.ip_address(ip).version}:{ip}"


def _with_terms(record: str, terms: str) -> str:
    """RECORD with TERMS added before its ``all`` (or at the end)."""
    parts = record.split()
    at = next((i for i, p in enumerate(parts) if p.lstrip("+-~?").lower() == "all"), len(parts))
    return " ".join(parts[:at] + terms.split() + parts[at:])


def _permits(resolver: Dns, domain: str, ip, budget: list[int]) -> bool | None:
    """Whether DOMAIN's SPF passes IP: True, False (fail, softfail, neutral or no match), or
    None when this small evaluator can't tell."""
    try:
        records = [t for t in resolver.txt(domain) if t.lower().startswith("v=spf1")]
    except LookupFailed:
        return None
    if len(records) != 1:
        return False if not records else None
    redirect = None
    for term in records[0].split()[1:]:
        if "%{" in term:
            return None
        if term.lower().startswith("redirect="):
            redirect = term.split("=", 1)[1]
            continue
        if "=" in term:  # exp= and unknown modifiers
            continue
        qualifier = term[0] if term[0] in "+-~?" else "+"
        name, _, arg = term.lstrip("+-~?").partition(":")
        name = name.lower()
        matched = _matches(resolver, name, arg, domain, ip, budget)
        if matched is None:
            return None
        if matched:
            return qualifier == "+"
    if redirect:
        budget[0] -= 1
        return None if budget[0] < 0 else _permits(resolver, redirect, ip, budget)
    return False


def _matches(resolver: Dns, name: str, arg: str, domain: str, ip, budget: list[int]) -> bool | None:
    base, cidr = name, None
    if "/" in name:  # "a/24", "mx/24"
        base, _, cidr = name.partition("/")
    if "/" in arg and base in ("a", "mx"):
        arg, _, cidr = arg.partition("/")
    if base == "all":
        return True
    if base in ("ip4", "ip6"):
        try:
            return ip in ipaddress.ip_network(arg, strict=False)
        except ValueError:
            return None
    if base in ("a", "mx", "include"):
        budget[0] -= 1
        if budget[0] < 0:
            return None
        target = arg or domain
        try:
            if base == "include":
                inner = _permits(resolver, target, ip, budget)
                return None if inner is None else inner
            hosts = [target] if base == "a" else [str(r.exchange).rstrip(".") for r in resolver.query(target, "MX")]
            return any(_in(ip, addr, cidr) for h in hosts for addr in resolver.addresses(h))
        except LookupFailed:
            return None
    return None  # exists, ptr, anything else: not evaluated here


def _in(ip, address: str, cidr: str | None) -> bool:
    other = ipaddress.ip_address(address)
    if other.version != ip.version:
        return False
    if not cidr:
        return ip == other
    try:
        return ip in ipaddress.ip_network(f"{address}/{cidr}", strict=False)
    except ValueError:
        return False


# ---------------------------------------------------------------------------- DKIM


def _dkim(resolver: Dns, sender: Sender) -> list[Finding]:
    where = f"channel {sender.channel} ({sender.provider})"
    if sender.provider != "smtp":
        return [Finding(sender.from_domain, "DKIM", OK, f"{where}: signed by {sender.provider} (check its domain "
                                                        f"authentication shows {sender.from_domain} verified)")]
    if not sender.selector:
        return [Finding(sender.from_domain, "DKIM", FAIL, f"{where} does not sign its messages: set "
                                                          "dkim_selector and dkim_private_key_env")]
    name = f"{sender.selector}._domainkey.{sender.dkim_domain}"
    records = [t for t in resolver.txt(name) if "p=" in t]
    want = _record(name, dkim.public_record(sender.key)) if sender.key else None
    if not records:
        detail = f"no DKIM key at {name} ({where} signs with s={sender.selector} d={sender.dkim_domain})"
        if sender.key is None:
            detail += f"; the record can't be written: {sender.key_problem}"
        return [Finding(sender.dkim_domain, "DKIM", FAIL, detail, add=want)]
    if sender.key is None:
        return [Finding(sender.dkim_domain, "DKIM", UNKNOWN, f"{name} exists; can't tell whether it is the "
                                                             f"signing key: {sender.key_problem}")]
    if any(dkim.record_matches(sender.key, t) for t in records):
        return [Finding(sender.dkim_domain, "DKIM", OK, f"{name} publishes the key {where} signs with")]
    return [Finding(sender.dkim_domain, "DKIM", FAIL, f"{name}'s p= is not the public half of the key {where} "
                                                      "signs with: every signature fails", add=want)]


# ---------------------------------------------------------------------------- DMARC


def organizational(domain: str) -> str:
    labels = domain.lower().rstrip(".").split(".")
    if len(labels) >= 3 and len(labels[-1]) == 2 and labels[-2] in _SLDS:
        return ".".join(labels[-3:])
    return ".".join(labels[-2:])


def aligned(a: str, b: str, strict: bool) -> bool:
    return a.lower() == b.lower() if strict else organizational(a) == organizational(b)


def _dmarc(resolver: Dns, domain: Domain) -> list[Finding]:
    name = f"_dmarc.{domain.name}"
    records = [t for t in resolver.txt(name) if t.lower().startswith("v=dmarc1")]
    org = organizational(domain.name)
    if not records and org != domain.name:
        name = f"_dmarc.{org}"
        records = [t for t in resolver.txt(name) if t.lower().startswith("v=dmarc1")]
    findings = []
    if len(records) != 1:
        why = "no DMARC record" if not records else f"{len(records)} DMARC records (receivers ignore them all)"
        findings.append(Finding(domain.name, "DMARC", FAIL, f"{why} at _dmarc.{domain.name}; start with p=none and "
                                                            "tighten once the reports show every source aligned",
                                add=_record(f"_dmarc.{domain.name}",
                                            f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain.name}")))
        tags = {}
    else:
        tags = dkim.parse_tags(records[0])
        if tags.get("p", "").lower() not in ("none", "quarantine", "reject"):
            findings.append(Finding(domain.name, "DMARC", FAIL, f"{name}: {records[0]!r} has no valid p= policy",
                                    add=_record(name, f"v=DMARC1; p=none; rua=mailto:dmarc-reports@{domain.name}")))
        else:
            findings.append(Finding(domain.name, "DMARC", OK, f"{name}: {records[0]!r}"))
    for sender in domain.senders:
        findings.append(_alignment(domain.name, sender, tags))
    return findings


def _alignment(domain: str, sender: Sender, tags: dict) -> Finding:
    where = f"channel {sender.channel} ({sender.provider})"
    strict_dkim, strict_spf = tags.get("adkim", "r").lower() == "s", tags.get("aspf", "r").lower() == "s"
    spf_ok = aligned(sender.return_domain, domain, strict_spf)
    if sender.provider != "smtp":
        return Finding(domain, "alignment", OK if spf_ok else WARN,
                       f"{where}: DKIM alignment depends on {sender.provider}'s domain authentication for {domain}"
                       + ("" if spf_ok else f"; return path @{sender.return_domain} is not aligned"))
    dkim_ok = bool(sender.selector) and aligned(sender.dkim_domain or "", domain, strict_dkim)
    parts = [f"DKIM d={sender.dkim_domain} {'aligned' if dkim_ok else 'NOT aligned'}" if sender.selector
             else "no DKIM signature",
             f"return path @{sender.return_domain} {'aligned' if spf_ok else 'NOT aligned'}"]
    status = OK if dkim_ok and spf_ok else WARN if dkim_ok or spf_ok else FAIL
    detail = f"{where}: From @{domain}: " + ", ".join(parts)
    if status == FAIL:
        detail += (f"; DMARC fails for every message: sign as d={domain} (dkim_domain, and publish its key) "
                   f"or send with a return path @{domain}")
    return Finding(domain, "alignment", status, detail)


def _record(name: str, value: str) -> str:
    chunks = [value[i:i + 255] for i in range(0, len(value), 255)]  # one TXT string holds 255 bytes
    return f'{name}. TXT ' + " ".join(f'"{c}"' for c in chunks)

