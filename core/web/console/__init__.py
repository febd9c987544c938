"""The console path: a browser's websocket to a VM's VNC.

:mod:`routes` answers the console URLs (a share link, the page, the websocket, why it does not
open); :mod:`proxy` relays the websocket and counts the viewers; :mod:`endpoints` keeps one
endpoint per open VM in the endpoint process that :mod:`bridge` starts and talks to;
:mod:`wsbridge` is that process (websockify's proxy), :mod:`secret` its auth plugin; :mod:`watch`
closes consoles whose link, VM or owner went. Kept light: the endpoint process imports it.
"""
