"""Client addresses as regular languages: the text forms `semantics.client_address` gives.

Rules judge the client address as text in one form per address (IPv4 dotted
decimal without leading zeros; IPv6 as eight groups of four lower-case hex
digits), so an address range is a regular language over that text, and the
analysis decides `client in [..]` with the same derivatives as every other
atom.  A prefix fixes the leading octets (hex digits), bounds the one it cuts
through to a numeric range, and leaves the rest free; a decimal range is
built digit by digit, so each language is exact.
"""

from __future__ import annotations

import ipaddress

from hdrpolicy.analysis.regular import Algebra, Re

_HEX_DIGITS = "0123456789abcdef"
# IPv4-mapped IPv6 addresses: `client_address` gives them in IPv4 form.
MAPPED = ipaddress.IPv6Network("::ffff:0:0/96")


def decimal_range(alg: Algebra, lo: int, hi: int) -> Re:
    """The numbers lo..hi written in decimal without leading zeros."""
    parts = []
    for width in range(len(str(lo)), len(str(hi)) + 1):
        first = 0 if width == 1 else 10 ** (width - 1)
        low, high = max(lo, first), min(hi, 10**width - 1)
        if low <= high:
            parts.append(_digits_between(alg, str(low), str(high)))
    return alg.union(*parts)


def _digits_between(alg: Algebra, low: str, high: str) -> Re:
    """Digit strings of one width between `low` and `high` (as numbers, both included)."""
    if len(low) == 1:
        return alg.chars([(ord(low), ord(high))])
    if low[0] == high[0]:
        return alg.cat(alg.literal(low[0]), _digits_between(alg, low[1:], high[1:]))
    rest = len(low) - 1
    digit = alg.chars([(ord("0"), ord("9"))])
    parts = [
        alg.cat(alg.literal(low[0]), _digits_between(alg, low[1:], "9" * rest)),
        alg.cat(alg.literal(high[0]), _digits_between(alg, "0" * rest, high[1:])),
    ]
    if ord(high[0]) - ord(low[0]) > 1:
        middle = alg.chars([(ord(low[0]) + 1, ord(high[0]) - 1)])
        parts.append(alg.cat(middle, *[digit] * rest))
    return alg.union(*parts)


def _hex_range(alg: Algebra, lo: int, hi: int) -> Re:
    """One lower-case hex digit whose value is lo..hi."""
    return alg.union(*[alg.literal(_HEX_DIGITS[v]) for v in range(lo, hi + 1)])


def network_language(alg: Algebra, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> Re:
    """The text of every address in the range, in `client_address`'s form."""
    if isinstance(network, ipaddress.IPv4Network):
        return _ipv4_language(alg, network)
    return _ipv6_language(alg, network)


def _ipv4_language(alg: Algebra, network: ipaddress.IPv4Network) -> Re:
    octets = network.network_address.packed
    parts = []
    for k in range(4):
        bits = min(max(network.prefixlen - 8 * k, 0), 8)  # prefix bits in this octet
        lo = octets[k]
        hi = lo | ((1 << (8 - bits)) - 1)
        if k:
            parts.append(alg.literal("."))
        parts.append(alg.literal(str(lo)) if lo == hi else decimal_range(alg, lo, hi))
    return alg.cat(*parts)


def _ipv6_language(alg: Algebra, network: ipaddress.IPv6Network) -> Re:
    digits = network.network_address.exploded.replace(":", "")
    parts = []
    for k in range(32):
        bits = min(max(network.prefixlen - 4 * k, 0), 4)  # prefix bits in this digit
        lo = int(digits[k], 16)
        hi = lo | ((1 << (4 - bits)) - 1)
        if k and k % 4 == 0:
            parts.append(alg.literal(":"))
        parts.append(_hex_range(alg, lo, hi))
    return alg.cat(*parts)


def client_domain(alg: Algebra) -> Re:
    """Every value `client_address` gives: "" (not an IP address), an IPv4 address,
    or an IPv6 address outside the IPv4-mapped range (those are given as IPv4)."""
    ipv4 = network_language(alg, ipaddress.IPv4Network("0.0.0.0/0"))
    ipv6 = network_language(alg, ipaddress.IPv6Network("::/0"))
    mapped = network_language(alg, MAPPED)
    return alg.union(alg.eps, ipv4, alg.inter(ipv6, alg.compl(mapped)))
