"""What a hostile web page could make a user's browser do to the service, refused.

With auth off (the default), the only thing that tells the user's own UI from
any page the user visits is what the browser says about the request:

- `Host`: a page on `evil.example` whose name the attacker re-points at 127.0.0.1
  (DNS rebinding) is same-origin in the browser's eyes, but its requests name
  `evil.example`. Only host names this server is known by are answered; the
  port is ignored. A host written as an IP address is always answered: no
  browser sends one for a page of another name, so it cannot be rebound.
- `Origin`: a browser names the page behind every POST, every cross-origin
  request and every WebSocket handshake. One that is neither this server
  (scheme, host and port of the `Host` header) nor listed in
  TASKSTATE_CORS_ORIGINS is refused. Clients other than browsers send none.
- `Content-Type`: an HTML form posts without a CORS preflight, but only as
  form data or text. A POST, PUT or PATCH with a body must say it is JSON.

HTTP requests get the contract's error shape; a WebSocket is accepted, sent
the error and closed with 1008, as the events route refuses a bad token.
"""

from __future__ import annotations

import ipaddress
import json
import socket
from collections.abc import Iterable
from urllib.parse import urlsplit

from starlette.responses import JSONResponse
from starlette.types import ASGIApp, Receive, Scope, Send

#: Host names that only ever mean this machine.
LOOPBACK_NAMES = frozenset({"localhost"})
WILDCARD_BINDS = frozenset({"", "0.0.0.0", "::"})
_DEFAULT_PORTS = {"http": 80, "https": 443}
_WEB_SCHEMES = {"http": "http", "ws": "http", "https": "https", "wss": "https"}
BODY_METHODS = frozenset({"POST", "PUT", "PATCH"})
POLICY_VIOLATION = 1008


def split_host(host: str) -> tuple[str, int | None]:
    """A `Host` header's name (lowercase, without IPv6 brackets or a final dot) and port."""
    host = host.strip().lower()
    port = ""
    if host.startswith("["):
        name, _, rest = host[1:].partition("]")
        port = rest[1:] if rest.startswith(":") else ""
    elif host.count(":") == 1:
        name, _, port = host.partition(":")
    else:
        name = host  # no port, or an IPv6 address without its brackets
    return name.rstrip("."), int(port) if port.isdigit() else None


def host_name(host: str) -> str:
    return split_host(host)[0]


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def default_allowed_hosts(bind_host: str) -> frozenset[str]:
    """`localhost` and the bind address; on a wildcard bind, also this machine's names
    (which is how a container is reached by its neighbours)."""
    names = set(LOOPBACK_NAMES)
    bind = host_name(bind_host)
    if bind not in WILDCARD_BINDS:
        names.add(bind)
        return frozenset(names)
    for name in (socket.gethostname(), socket.getfqdn()):
        if name:
            names.add(host_name(name))
    return frozenset(names)


def allowed_hosts(setting: str, bind_host: str) -> frozenset[str] | None:
    """The host names to answer (IP addresses are always answered); None: any host (`*`)."""
    configured = {host_name(h) for h in setting.split(",") if h.strip()}
    if "*" in configured:
        return None
    return frozenset(configured) | LOOPBACK_NAMES if configured else default_allowed_hosts(bind_host)


def _origin(scheme: str, host: str, port: int | None) -> str:
    netloc = f"[{host}]" if ":" in host else host
    if port is not None and port != _DEFAULT_PORTS.get(scheme):
        netloc += f":{port}"
    return f"{scheme}://{netloc}"


def normal_origin(origin: str) -> str | None:
    """`scheme://host[:port]` as the browser means it (default port dropped), or None if it is
    not a web origin (`null`, a file, garbage)."""
    try:
        parts = urlsplit(origin.strip())
        port = parts.port
    except ValueError:
        return None
    scheme = parts.scheme.lower()
    if scheme not in _DEFAULT_PORTS or not parts.hostname:
        return None
    return _origin(scheme, host_name(parts.hostname), port)


def _request_origin(scope: Scope, host: str) -> str:
    """The origin of a page served from this request's URL."""
    name, port = split_host(host)
    return _origin(_WEB_SCHEMES.get(scope.get("scheme", "http"), "http"), name, port)


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _is_json(content_type: str) -> bool:
    media = content_type.partition(";")[0].strip().lower()
    return media == "application/json" or (media.startswith("application/") and media.endswith("+json"))


class BrowserGuardMiddleware:
    """Refuses requests a hostile page could make a browser send (see the module docstring)."""

    def __init__(self, app: ASGIApp, *, hosts: frozenset[str] | None, origins: Iterable[str]) -> None:
        self.app = app
        self.hosts = hosts
        listed = {o.strip() for o in origins if o.strip()}
        self.any_origin = "*" in listed
        self.origins = {n for n in map(normal_origin, listed) if n is not None}

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        refusal = self._refusal(scope)
        if refusal is None:
            await self.app(scope, receive, send)
        elif scope["type"] == "http":
            status, body = refusal
            response = JSONResponse(body, status_code=status)
            await response(scope, receive, send)
        else:
            await _refuse_websocket(receive, send, refusal[1])

    def _refusal(self, scope: Scope) -> tuple[int, dict[str, str]] | None:
        host = _header(scope, b"host")
        if host is not None and not self._host_allowed(host_name(host)):
            return 400, {
                "error": "host_not_allowed",
                "detail": f"this server does not answer for host {host_name(host)!r}; "
                "see TASKSTATE_ALLOWED_HOSTS",
            }
        origin = _header(scope, b"origin")
        if origin is not None and not self._origin_allowed(scope, origin, host):
            return 403, {
                "error": "forbidden",
                "detail": f"cross-origin requests are refused (Origin {origin[:200]!r}); "
                "see TASKSTATE_CORS_ORIGINS",
            }
        if scope["type"] == "http" and scope["method"] in BODY_METHODS:
            content_type = _header(scope, b"content-type")
            if content_type is None:
                length = _header(scope, b"content-length")
                has_body = _header(scope, b"transfer-encoding") is not None or (
                    length is not None and length.strip() not in ("", "0")
                )
                wrong = has_body
            else:
                wrong = not _is_json(content_type)
            if wrong:
                return 415, {
                    "error": "unsupported_media_type",
                    "detail": "the request body must be JSON (Content-Type: application/json)",
                }
        return None

    def _host_allowed(self, name: str) -> bool:
        return self.hosts is None or name in self.hosts or _is_address(name)

    def _origin_allowed(self, scope: Scope, origin: str, host: str | None) -> bool:
        if self.any_origin:
            return True
        normal = normal_origin(origin)
        if normal is None:
            return False
        return normal in self.origins or (host is not None and normal == _request_origin(scope, host))


async def _refuse_websocket(receive: Receive, send: Send, body: dict[str, str]) -> None:
    message = await receive()
    if message["type"] != "websocket.connect":
        return
    await send({"type": "websocket.accept"})
    await send({"type": "websocket.send", "text": json.dumps({"type": "error", **body})})
    await send({"type": "websocket.close", "code": POLICY_VIOLATION})
