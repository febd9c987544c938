"""The endpoint's secret: only our server may open a console websocket on an endpoint.

This module is websockify's auth plugin (it runs inside the endpoint process): keep it light.
"""

from __future__ import annotations

import hmac
import os

from websockify.auth_plugins import AuthenticationError

ENDPOINT_SECRET_ENV = "VMM_ENDPOINT_SECRET"
ENDPOINT_SECRET_HEADER = "X-VMM-Endpoint"


class EndpointSecret:
    """websockify auth plugin (it runs inside websockify): only our server may connect.

    Each endpoint gets a random secret in its environment (which only its user can read) and
    refuses a websocket upgrade without it, before any connection to VNC: a loopback port of the
    fallback, or a Unix socket reached by root, gives nobody else a screen.
    """

    def __init__(self) -> None:
        self._secret = os.environ.get(ENDPOINT_SECRET_ENV, "").encode()

    def authenticate(self, headers: object, target_host: object, target_port: object) -> None:
        given = str(headers.get(ENDPOINT_SECRET_HEADER) or "").encode()  # type: ignore[attr-defined]
        if not self._secret or not hmac.compare_digest(given, self._secret):
            raise AuthenticationError(response_code=403, response_msg="Forbidden")
