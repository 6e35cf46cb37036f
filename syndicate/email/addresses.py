"""Addresses as the 7-bit APIs take them (Mailgun, Amazon SES).

The subscriber list accepts any address ``email-validator`` accepts, internationalized ones
included (``josé@example.org``, ``user@bücher.example``). Some sending APIs take ASCII only:

* Amazon SES (SESv2 ``Destination`` and ``FromEmailAddress``, botocore model): "Amazon SES does
  not support the SMTPUTF8 extension ... the local part of a destination email address (the
  part of the email address that precedes the @ sign) may only contain 7-bit ASCII characters.
  If the domain part of an address ... contains non-ASCII characters, they must be encoded
  using Punycode"; a display name with non-ASCII characters must be MIME encoded-word
  (RFC 2047).
* Mailgun (documentation.mailgun.com, send-http): "An error will be returned with 'parameter is
  not a valid address' if the provided email address fails syntax checks in accordance with
  RFC5321, RFC5322, RFC6854", none of which allows a non-ASCII local part.

So an address whose local part is not ASCII cannot be mailed through them: it is refused for
that recipient alone (``failed``) before the call, instead of failing the whole batch.
"""

from __future__ import annotations

from email.headerregistry import Address
from email.utils import formataddr, parseaddr


class NotAscii(ValueError):
    """The address cannot be written in 7-bit ASCII (its local part is not ASCII)."""


def ascii_address(address: str) -> str:
    """ADDRESS with its domain in Punycode; NotAscii when the local part is not ASCII."""
    local, at, domain = address.rpartition("@")
    if not at or not local or not domain:
        raise NotAscii(f"{address!r} is not an address")
    if not local.isascii():
        raise NotAscii(f"{address!r}: the part before @ is not 7-bit ASCII, which this API cannot send to")
    try:
        domain = domain.encode("idna").decode("ascii") if not domain.isascii() else domain
    except UnicodeError:
        raise NotAscii(f"{address!r}: the domain cannot be written in Punycode") from None
    return f"{local}@{domain}"


def ascii_sender(sender: str) -> str:
    """A From header value (``"Name" <addr>`` or a bare address) in 7-bit ASCII: the display
    name quoted or RFC 2047 encoded as needed (``email.utils.formataddr``), the domain in
    Punycode."""
    name, address = parseaddr(sender)
    if not address:
        return sender
    address = ascii_address(address)
    if not name:
        return address
    if name.isascii():
        return str(Address(display_name=name, addr_spec=address))  # quotes specials like " and ,
    return formataddr((name, address), charset="utf-8")
