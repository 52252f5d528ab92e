"""Outbound URLs (budget webhooks, and every future callback): never to this machine or a private network.

`check_url` refuses a URL whose host is, or resolves to, a loopback, link-local, private, shared
(100.64/10), multicast, reserved or unspecified address — the cloud metadata service at 169.254.169.254
included — unless the host or the address is in the operator's allow-list
(`SOLVENT_OUTBOUND_ALLOW_HOSTS`). It is checked when the URL is saved and again before each delivery
(a name may resolve elsewhere later). Redirects are not followed by senders.
"""

from __future__ import annotations

import ipaddress
import socket
from urllib.parse import urlsplit

from .errors import ValidationFailed


def _blocked(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    if isinstance(ip, ipaddress.IPv6Address) and ip.ipv4_mapped is not None:
        ip = ip.ipv4_mapped
    return (ip.is_loopback or ip.is_link_local or ip.is_private or ip.is_multicast or ip.is_reserved
            or ip.is_unspecified or ip in ipaddress.ip_network("100.64.0.0/10"))


def check_url(url: str, allow_hosts: list[str] | tuple[str, ...] = (), field: str = "webhook_url",
              resolve: bool = True) -> str:
    """The URL if it may be called; otherwise a 422 naming `field`."""
    if not isinstance(url, str) or len(url) > 2000:
        raise ValidationFailed(f"`{field}` must be an http(s) URL of at most 2000 characters.", field=field)
    parts = urlsplit(url)
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise ValidationFailed(f"`{field}` must be an http(s) URL but is {url!r}.", field=field, value=url)
    host = parts.hostname.lower()
    if host in allow_hosts:
        return url
    try:
        port = parts.port or (443 if parts.scheme == "https" else 80)
    except ValueError as e:
        raise ValidationFailed(f"`{field}` has an invalid port: {url!r}.", field=field, value=url) from e
    try:
        addresses = [ipaddress.ip_address(host)]
    except ValueError:
        numeric = None
        try:  # the forms C resolvers also accept: 0x7f000001, 2130706433, 127.1, 0177.0.0.1
            numeric = ipaddress.ip_address(socket.inet_aton(host))
        except OSError:
            pass
        if numeric is not None:
            addresses = [numeric]
        elif host == "localhost" or host.endswith((".localhost", ".local", ".internal")):
            addresses = [ipaddress.ip_address("127.0.0.1")]
        elif not resolve:
            return url
        else:
            try:
                infos = socket.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except (OSError, UnicodeError) as e:
                raise ValidationFailed(f"`{field}` host {host!r} does not resolve.", field=field, value=url) from e
            addresses = [ipaddress.ip_address(info[4][0].split("%")[0]) for info in infos]
    for ip in addresses:
        if _blocked(ip) and str(ip) not in allow_hosts:
            raise ValidationFailed(
                f"`{field}` {url!r} points at a loopback, link-local or private address ({ip}); outbound calls "
                "go to public addresses only unless SOLVENT_OUTBOUND_ALLOW_HOSTS names the host.",
                field=field, value=url)
    return url
