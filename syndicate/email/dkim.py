"""DKIM: the signature on every message the tool mails itself (SMTP), made with dkimpy (RFC 6376).

SMTP channel options::

    dkim_selector = "syndicate"               # the record is at syndicate._domainkey.<domain>
    dkim_domain = "harborwellness.example"    # d=; default: the From address's domain
    dkim_private_key_env = "DKIM_PRIVATE_KEY" # environment variable holding the RSA key (PEM)

rsa-sha256, relaxed/relaxed canonicalization. Each recipient's message is signed after
personalization (its To, Message-ID and one-click unsubscribe link are its own), so the
signature covers exactly what that recipient gets. ``syndicate check --dns`` prints the TXT
record to publish (``public_record``) and checks the published one against the key.
"""

from __future__ import annotations

import base64
import re
from dataclasses import dataclass
from email.utils import parseaddr

import dkim
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa, utils
from dkim.crypto import UnparsableKeyError, parse_pem_private_key, parse_public_key

from syndicate.settings import secret

# What a recipient sees and acts on: who it is from and to, what it says (the MIME headers
# describe the body the signature's bh= covers), and the one-click unsubscribe (RFC 8058 asks
# that List-Unsubscribe and List-Unsubscribe-Post be signed).
SIGNED = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"mime-version",
          b"content-type", b"content-transfer-encoding", b"list-unsubscribe", b"list-unsubscribe-post")
# Signed once more than they occur: a second From, Subject or unsubscribe link added on the way
# breaks the signature instead of riding along under it.
OVERSIGNED = (b"from", b"to", b"subject", b"date", b"message-id", b"reply-to", b"list-unsubscribe",
              b"list-unsubscribe-post")
_HEADER_NAME = re.compile(rb"^([!-9;-~]+):", re.M)


# dkimpy computes RSA in pure Python: about 15 ms a 2048-bit signature on the test machine, which
# would make signing most of an SMTP send's cost (bench/RESULTS.md: about 7 ms a message without).
# The signature itself (RSASSA-PKCS1-v1_5 over dkimpy's hash) is deterministic; OpenSSL, through
# `cryptography`, makes the same bytes in well under a millisecond. dkimpy still does everything
# else (canonicalization, the header, folding); keys it was not given here take its own path.
_OPENSSL_KEYS: dict[int, rsa.RSAPrivateKey] = {}  # modulus -> key
_pure_rsa_sign = dkim.RSASSA_PKCS1_v1_5_sign


def _rsa_sign(hash, private_key):
    key = _OPENSSL_KEYS.get(private_key.get("modulus"))
    if key is None or hash.name.lower() != "sha256":
        return _pure_rsa_sign(hash, private_key)
    return key.sign(hash.digest(), padding.PKCS1v15(), utils.Prehashed(hashes.SHA256()))


dkim.RSASSA_PKCS1_v1_5_sign = _rsa_sign


class DkimKeyError(ValueError):
    """The configured key cannot sign (not an RSA private key in PEM); never shows the key."""


@dataclass(frozen=True)
class DkimSigner:
    selector: str
    domain: str
    key: bytes  # the PEM, as dkimpy reads it

    def sign(self, data: bytes) -> bytes:
        """DATA (a whole message, CRLF) with its DKIM-Signature header in front."""
        head = data.split(b"\r\n\r\n", 1)[0]
        present = [name.lower() for name in _HEADER_NAME.findall(head)]
        include = [h for h in SIGNED if h in present] + [h for h in OVERSIGNED if h in present]
        signature = dkim.sign(data, self.selector.encode(), self.domain.encode(), self.key,
                              canonicalize=(b"relaxed", b"relaxed"), include_headers=include)
        return signature + data

    def public_record(self) -> str:
        return public_record(self.key)


def signer(options: dict, from_address: str, what: str) -> DkimSigner | None:
    """The signer an SMTP channel's OPTIONS configure, or None (no ``dkim_selector``).
    Raises SettingsError (key variable unset) or DkimKeyError (not a usable key)."""
    selector = options.get("dkim_selector")
    if not selector:
        return None
    domain = options.get("dkim_domain") or parseaddr(from_address)[1].rpartition("@")[2]
    if not domain:
        raise DkimKeyError(f"{what}: dkim_domain is not set and the From address has no domain")
    pem = secret(options.get("dkim_private_key_env"), f"{what} (dkim_private_key_env)")
    return DkimSigner(str(selector), str(domain).lower(), read_key(pem, what))


def read_key(pem: str, what: str = "DKIM key") -> bytes:
    """The PEM as bytes dkimpy signs with; a key put in one line of an env file ("\\n") works."""
    data = pem.replace("\\n", "\n").replace("\r\n", "\n").strip().encode() + b"\n"
    try:
        parse_pem_private_key(data)
        key = serialization.load_pem_private_key(data, password=None)
    except (UnparsableKeyError, ValueError, IndexError, TypeError):
        raise DkimKeyError(f"{what}: not an RSA private key in PEM form (BEGIN RSA PRIVATE KEY or "
                           "BEGIN PRIVATE KEY)") from None
    if isinstance(key, rsa.RSAPrivateKey):
        _OPENSSL_KEYS[key.private_numbers().public_numbers.n] = key
    return data


def public_key(key: bytes) -> str:
    """The base64 SubjectPublicKeyInfo of KEY's public half: the p= of its TXT record."""
    private = parse_pem_private_key(key)
    rsa_key = _der(0x30, _der_int(private["modulus"]) + _der_int(private["publicExponent"]))
    algorithm = _der(0x30, _der(0x06, bytes.fromhex("2a864886f70d010101")) + _der(0x05, b""))  # rsaEncryption
    return base64.b64encode(_der(0x30, algorithm + _der(0x03, b"\0" + rsa_key))).decode()


def public_record(key: bytes) -> str:
    return f"v=DKIM1; k=rsa; p={public_key(key)}"


def record_matches(key: bytes, txt: str) -> bool:
    """Whether the TXT record TXT publishes KEY's public half (compared as numbers, so any
    valid encoding of p= matches)."""
    tags = parse_tags(txt)
    try:
        published = parse_public_key(base64.b64decode(re.sub(r"\s+", "", tags.get("p", ""))))
    except Exception:  # noqa: BLE001 - any unreadable p= is simply not our key
        return False
    private = parse_pem_private_key(key)
    return (published["modulus"], published["publicExponent"]) == (private["modulus"], private["publicExponent"])


def parse_tags(txt: str) -> dict[str, str]:
    """``tag=value; ...`` (DKIM, DMARC) as a dict, tags lower-cased."""
    tags = {}
    for part in txt.split(";"):
        name, sep, value = part.partition("=")
        if sep:
            tags[name.strip().lower()] = value.strip()
    return tags


def _der(tag: int, body: bytes) -> bytes:
    n = len(body)
    if n < 0x80:
        return bytes([tag, n]) + body
    size = n.to_bytes((n.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(size)]) + size + body


def _der_int(value: int) -> bytes:
    body = value.to_bytes(value.bit_length() // 8 + 1, "big")  # one spare byte keeps it positive
    while len(body) > 1 and body[0] == 0 and body[1] < 0x80:
        body = body[1:]
    return _der(0x02, body)
