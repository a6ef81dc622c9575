"""Which URLs the service itself may reach (webhooks, image inputs), and reaching them safely.

A client-supplied URL must not turn the service into a proxy into its own network: only http(s),
and by default no private, loopback, link-local, multicast or reserved address. The check runs
when the request arrives (API) and again right before the connection (worker); the connection
then goes to the very address that was checked, so a DNS answer that changes in between (DNS
rebinding) cannot redirect it.
"""

from __future__ import annotations

import asyncio
import ipaddress
import socket
from dataclasses import dataclass
from urllib.parse import SplitResult, urlsplit, urlunsplit

import httpx

ALLOWED_SCHEMES = ("http", "https")
MAX_URL_LENGTH = 2048
RESOLVE_TIMEOUT_SECONDS = 5.0

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address


class UrlRefused(ValueError):
    """A URL the service will not reach; str() is the reason, for the user."""


@dataclass(frozen=True)
class CheckedUrl:
    """A URL whose host resolved to addresses that passed the policy."""

    url: str
    parts: SplitResult
    host: str
    port: int
    addresses: tuple[IPAddress, ...]


def check_url_syntax(url: str) -> SplitResult:
    """Scheme http/https, a host, no credentials. Raises UrlRefused."""
    if not isinstance(url, str) or not url:
        raise UrlRefused("must be an http(s) URL")
    if len(url) > MAX_URL_LENGTH:
        raise UrlRefused(f"must be at most {MAX_URL_LENGTH} characters long")
    try:
        parts = urlsplit(url)
        parts.port  # noqa: B018 - raises ValueError for a bad port
    except ValueError as err:
        raise UrlRefused(f"is not a valid URL ({err})") from None
    scheme = parts.scheme.lower()
    if scheme not in ALLOWED_SCHEMES:
        shown = f"'{scheme}'" if scheme else "none"
        raise UrlRefused(f"scheme {shown} is not allowed; use http or https")
    if not parts.hostname:
        raise UrlRefused("has no host")
    if parts.username or parts.password:
        raise UrlRefused("must not contain credentials (user:password@)")
    if any(ch.isspace() or ord(ch) < 32 for ch in url):
        raise UrlRefused("must not contain spaces or control characters")
    return parts


def address_problem(address: IPAddress) -> str | None:
    """Why an address is not a public one, or None when it is."""
    if isinstance(address, ipaddress.IPv6Address) and address.ipv4_mapped is not None:
        address = address.ipv4_mapped
    if address.is_unspecified:
        return "is unspecified"
    if address.is_loopback:
        return "is a loopback address"
    if address.is_link_local:
        return "is a link-local address"
    if address.is_multicast:
        return "is a multicast address"
    if address.is_private:
        return "is a private address"
    if address.is_reserved:
        return "is a reserved address"
    if not address.is_global:
        return "is not a public address"
    return None


async def resolve_host(host: str, port: int) -> tuple[IPAddress, ...]:
    """Every address the host resolves to (an IP literal resolves to itself)."""
    try:
        return (ipaddress.ip_address(host),)
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    try:
        async with asyncio.timeout(RESOLVE_TIMEOUT_SECONDS):
            infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    except TimeoutError:
        raise UrlRefused(
            f"host '{host}' did not resolve within {RESOLVE_TIMEOUT_SECONDS:g} s"
        ) from None
    except (socket.gaierror, UnicodeError) as err:
        raise UrlRefused(f"host '{host}' does not resolve ({err})") from None
    addresses: list[IPAddress] = []
    for _family, _type, _proto, _name, sockaddr in infos:
        address = ipaddress.ip_address(str(sockaddr[0]).split("%", 1)[0])
        if address not in addresses:
            addresses.append(address)
    if not addresses:
        raise UrlRefused(f"host '{host}' does not resolve")
    return tuple(addresses)


async def check_url(url: str, *, allow_private: bool) -> CheckedUrl:
    """Syntax, then resolution: refused when any address is not public, unless allowed.

    Every address must pass, not just one: a client could otherwise pair a public address with
    a private one and hope the connection picks the second.
    """
    parts = check_url_syntax(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme.lower() == "https" else 80)
    addresses = await resolve_host(host, port)
    for address in addresses:
        if address.is_unspecified or address.is_multicast:
            raise UrlRefused(
                f"host '{host}' resolves to {address}, which {address_problem(address)}"
            )
        if not allow_private:
            problem = address_problem(address)
            if problem is not None:
                raise UrlRefused(
                    f"host '{host}' resolves to {address}, which {problem}"
                    " (not allowed by the service's configuration)"
                )
    return CheckedUrl(url=url, parts=parts, host=host, port=port, addresses=addresses)


def pinned_request(
    http: httpx.AsyncClient,
    method: str,
    target: CheckedUrl,
    *,
    headers: dict[str, str] | None = None,
    content: bytes | None = None,
) -> httpx.Request:
    """A request to the checked address itself, with the original Host header and TLS name."""
    address = target.addresses[0]
    literal = f"[{address}]" if isinstance(address, ipaddress.IPv6Address) else str(address)
    netloc = f"{literal}:{target.port}"
    url = urlunsplit(
        (target.parts.scheme, netloc, target.parts.path or "/", target.parts.query, "")
    )
    default_port = 443 if target.parts.scheme.lower() == "https" else 80
    host = f"[{target.host}]" if ":" in target.host else target.host  # an IPv6 literal
    host_header = host if target.port == default_port else f"{host}:{target.port}"
    all_headers = {"Host": host_header, **(headers or {})}
    return http.build_request(
        method,
        url,
        headers=all_headers,
        content=content,
        extensions={"sni_hostname": target.host},
    )
