"""The other replicas of this service: found through DNS (a headless Service), asked over plain HTTP.

Files behind download links and jobs live on the pod that made them (an emptyDir); behind a Service the
next request may land on another pod. That pod asks its peers for what it lacks (``find``: every peer at
once, the first 200 wins) and relays the answer. Saved mixes are copied to the peers when they change
(``send_all``). A request from a peer carries ``X-Kokoro-Peer``: it is answered from the pod's own state
only, never forwarded again, so lookups cannot loop.

Each configured host is resolved on every use to all of its addresses: a headless Service name lists the
ready pods of the moment. Listing the pod itself costs one local lookup that misses, nothing more.
"""

from __future__ import annotations

import asyncio
import ipaddress
import logging
import socket
from collections.abc import Iterable, Mapping
from typing import Any

import httpx

log = logging.getLogger(__name__)

PEER_HEADER = "X-Kokoro-Peer"
FORWARDED = ("authorization",)  # the caller's API key authorizes the peer lookup, as it did here


def parse_targets(spec: str) -> list[tuple[str, int]]:
    """``"a:8880, http://b:8880"`` -> [("a", 8880), ("b", 8880)]; raises ValueError naming a bad entry."""
    out = []
    for raw in spec.split(","):
        entry = raw.strip().removeprefix("http://").rstrip("/")
        if not entry:
            continue
        host, sep, port = entry.rpartition(":")
        if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
            raise ValueError(f"peer {raw.strip()!r} is not host:port")
        out.append((host.strip("[]"), int(port)))
    return out


def _url(ip: str, port: int) -> str:
    return f"http://[{ip}]:{port}" if ipaddress.ip_address(ip).version == 6 else f"http://{ip}:{port}"


def is_peer_request(headers: Mapping[str, str]) -> bool:
    return PEER_HEADER.lower() in {k.lower() for k in headers}


class Peers:
    def __init__(self, spec: str, timeout_s: float = 5.0, key: str | None = None) -> None:
        self.targets = parse_targets(spec)
        self._key = key  # for requests of the pod's own (no caller whose key to forward)
        self.timeout_s = timeout_s
        # connect and first byte bounded; a relayed file may take longer to flow
        self._client = httpx.AsyncClient(timeout=httpx.Timeout(timeout_s, read=60.0), follow_redirects=False)

    @property
    def own_key(self) -> str | None:
        """The key the pod's own requests use (whose saved-mix namespace a starting pod copies)."""
        return self._key

    @property
    def enabled(self) -> bool:
        return bool(self.targets)

    async def urls(self) -> list[str]:
        """Base URLs of every address of every configured host, resolved now (a failing name is skipped)."""
        loop = asyncio.get_running_loop()
        urls: list[str] = []
        for host, port in self.targets:
            try:
                infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
            except OSError as exc:
                log.warning("peer name does not resolve", extra={"peer": host, "reason": str(exc)})
                continue
            for info in infos:
                url = _url(str(info[4][0]), port)
                if url not in urls:
                    urls.append(url)
        return urls

    def _headers(self, incoming: Mapping[str, str] | None) -> dict[str, str]:
        headers = {PEER_HEADER: "1"}
        for name, value in (incoming or {}).items():
            if name.lower() in FORWARDED:
                headers[name] = value
        if self._key and "authorization" not in {k.lower() for k in headers}:
            headers["Authorization"] = f"Bearer {self._key}"
        return headers

    async def find(self, path: str, incoming: Mapping[str, str] | None = None) -> httpx.Response | None:
        """GET ``path`` from every peer at once; the first 200, still open (the caller closes it), or None."""
        urls = await self.urls()
        if not urls:
            return None
        headers = self._headers(incoming)

        async def ask(base: str) -> httpx.Response | None:
            try:
                resp = await self._client.send(
                    self._client.build_request("GET", base + path, headers=headers), stream=True
                )
            except httpx.HTTPError as exc:
                log.info("peer lookup failed", extra={"peer": base, "reason": type(exc).__name__})
                return None
            if resp.status_code == 200:
                return resp
            await resp.aclose()
            return None

        tasks = [asyncio.create_task(ask(u)) for u in urls]
        found: httpx.Response | None = None
        try:
            for next_done in asyncio.as_completed(tasks):
                found = await next_done
                if found is not None:
                    return found
            return None
        finally:
            for t in tasks:
                t.cancel()
            for other in await asyncio.gather(*tasks, return_exceptions=True):  # close every other answer
                if isinstance(other, httpx.Response) and other is not found:
                    await other.aclose()

    async def send_all(
        self, method: str, path: str, incoming: Mapping[str, str] | None = None,
        json: Any = None, extra: Mapping[str, str] | None = None,
    ) -> dict[str, int | str]:
        """Send one request to every peer; {peer: status or error name}. Never raises for a peer's failure."""
        urls = await self.urls()
        headers = {**self._headers(incoming), **(extra or {})}

        async def one(base: str) -> tuple[str, int | str]:
            try:
                resp = await self._client.request(method, base + path, headers=headers, json=json)
                return base, resp.status_code
            except httpx.HTTPError as exc:
                return base, type(exc).__name__

        return dict(await asyncio.gather(*(one(u) for u in urls)))

    async def get_json(self, path: str, urls: Iterable[str]) -> list[Any]:
        """GET ``path`` (JSON) from the given peers; the bodies of those that answered 200."""
        async def one(base: str) -> Any:
            try:
                resp = await self._client.get(base + path, headers=self._headers(None))
                return resp.json() if resp.status_code == 200 else None
            except (httpx.HTTPError, ValueError):
                return None

        return [b for b in await asyncio.gather(*(one(u) for u in urls)) if b is not None]

    async def aclose(self) -> None:
        await self._client.aclose()
