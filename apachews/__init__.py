"""apachews: a WebSocket reverse proxy for existing Apache httpd 2.2 and 2.4 servers."""

__version__ = "0.1.0"
