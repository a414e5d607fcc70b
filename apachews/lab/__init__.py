"""The lab: what verify, torture, bench and live-verify share to drive a real Apache.

- client.py: the WebSocket client, written once (raw handshake, frames, plain and TLS streams, plain GETs,
  the `websockets` client the checks use).
- echo.py, holding.py, raw.py: the backends (app-shaped echo, one that never closes on EOF, misbehaving ones).
- sockets.py: TCP sockets as the kernel sees them; orphans.py: what vanished clients leave behind.
- routes.py: the one route writer per tunnelling style (templates/apache/lab/).
- processes.py: the runner owns every httpd it starts (stopped, swept, on Ctrl-C and SIGTERM alike).
- report.py: Check, outcome, the tables; certs.py: a test-time certificate.
"""
