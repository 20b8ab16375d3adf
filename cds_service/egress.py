"""Outbound HTTP through the site's proxy: which requests go through ``DVT_CDS_HTTPS_PROXY`` and the clients that
honour it (the FHIR client's urllib3 pools, the JWKS and SMART ``requests`` sessions).

Many hospitals allow no direct egress: https requests to FHIR servers, JWKS hosts and SMART endpoints go through
the proxy as a CONNECT tunnel (TLS stays end to end, the proxy sees only the host). Loopback, the hosts of
``DVT_CDS_NO_PROXY`` and plain http (closed test networks only) go direct. Nothing is read from the process
environment (``HTTPS_PROXY``, ``NO_PROXY``, ``.netrc``): the settings are the one source.
"""

from __future__ import annotations

import ipaddress
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlsplit

import requests
import urllib3
from urllib3.util import make_headers

from cds_service.hosts import is_loopback_host

if TYPE_CHECKING:  # the FHIR layer below reads no settings module at run time
    from cds_service.settings import Settings


@dataclass(frozen=True)
class Egress:
    https_proxy: str | None = None
    no_proxy: tuple[str, ...] = ()

    @classmethod
    def from_settings(cls, settings: Settings) -> Egress:
        proxy = settings.https_proxy.get_secret_value() if settings.https_proxy else None
        return cls(proxy, tuple(settings.no_proxy))

    def proxy_for(self, url: str) -> str | None:
        """The proxy URL for a request to ``url``, or None to go direct."""
        if not self.https_proxy:
            return None
        parts = urlsplit(url)
        host = (parts.hostname or "").lower()
        if parts.scheme.lower() != "https" or not host or is_loopback_host(host):
            return None
        return None if bypassed(host, self.no_proxy) else self.https_proxy

    def pool_manager(self, **kwargs: Any) -> urllib3.PoolManager | RoutedPoolManager:
        """A urllib3 pool manager (same keyword arguments) that sends each request the way ``proxy_for`` says."""
        if not self.https_proxy:
            return urllib3.PoolManager(**kwargs)
        return RoutedPoolManager(self, **kwargs)

    def session(self) -> requests.Session:
        """A ``requests`` session that takes nothing from the environment and uses the proxy as ``proxy_for`` says."""
        return _RoutedSession(self)


def bypassed(host: str, no_proxy: Iterable[str]) -> bool:
    """``host`` matches an entry of ``DVT_CDS_NO_PROXY``: ``*``, a host name (and its subdomains; a leading dot is
    allowed), an IP address or a CIDR block."""
    address = _address(host)
    for entry in no_proxy:
        entry = entry.strip().lower()
        if not entry:
            continue
        if entry == "*":
            return True
        if address is not None:
            try:
                if address in ipaddress.ip_network(entry, strict=False):
                    return True
            except ValueError:
                pass
            continue
        name = entry.lstrip(".")
        if host == name or host.endswith("." + name):
            return True
    return False


def _address(host: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(host.strip("[]"))
    except ValueError:
        return None


class RoutedPoolManager:
    """Two urllib3 managers behind one ``request``/``clear``: a proxy manager for what goes through the proxy, a
    plain one for the rest (one ProxyManager cannot send some requests direct)."""

    def __init__(self, egress: Egress, **kwargs: Any):
        if egress.https_proxy is None:
            raise ValueError("RoutedPoolManager needs an HTTPS proxy")
        self._egress = egress
        self._direct = urllib3.PoolManager(**kwargs)
        proxy = urlsplit(egress.https_proxy)
        headers = {}
        if proxy.username is not None:
            # urllib3 does not take credentials from the proxy URL itself (requests does): say them explicitly.
            credentials = f"{unquote(proxy.username)}:{unquote(proxy.password or '')}"
            headers = make_headers(proxy_basic_auth=credentials)
        bare = proxy._replace(netloc=proxy.netloc.rsplit("@", 1)[-1]).geturl()
        self._proxied = urllib3.ProxyManager(bare, proxy_headers=headers, **kwargs)

    def request(self, method: str, url: str, **kwargs: Any) -> urllib3.BaseHTTPResponse:
        manager = self._proxied if self._egress.proxy_for(url) else self._direct
        return manager.request(method, url, **kwargs)

    def clear(self) -> None:
        self._direct.clear()
        self._proxied.clear()


class _RoutedSession(requests.Session):
    def __init__(self, egress: Egress):
        super().__init__()
        self.trust_env = False  # no HTTPS_PROXY, NO_PROXY or .netrc from the environment
        self._egress = egress

    def request(self, method: str | bytes, url: str | bytes, *args: Any, **kwargs: Any) -> requests.Response:
        target = url.decode() if isinstance(url, bytes) else url
        proxy = self._egress.proxy_for(target)
        kwargs.setdefault("proxies", {"https": proxy} if proxy else {})
        return super().request(method, url, *args, **kwargs)


DIRECT = Egress()
