"""`claimwire web`: the web view and HTTP API, served by uvicorn."""

from __future__ import annotations

import socket
import sys

import typer

from worker.cli.console import UserError, _db, app


def _can_listen(host: str, port: int) -> str | None:
    """None if ``host:port`` can be bound now, else why not."""
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    try:
        with socket.socket(family, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            probe.bind((host, port))
    except OSError as exc:
        return exc.strerror or str(exc)
    return None


@app.command()
def web(
    host: str = typer.Option("127.0.0.1", "--host", help="Address to listen on."),
    port: int = typer.Option(8000, "--port", min=1, max=65535, help="Port to listen on."),
) -> None:
    """The web view and HTTP API (/api/v1/) over the same database: search claims, see
    how a claim spread, follow feeds and jobs. Changes need CLAIMWIRE_WEB_TOKEN;
    without it the service is read-only and listens on loopback only."""
    from worker.cli.console import _settings
    from worker.web.webauth import is_loopback

    settings = _settings()
    host = host.strip()
    if not host:
        raise UserError("--host: give an address, e.g. 127.0.0.1")
    if not is_loopback(host) and not settings.web_token:
        # one line within 80 columns: anyone who can reach the port could read everything
        raise UserError(f"--host {host} needs CLAIMWIRE_WEB_TOKEN (else loopback only)")
    why = _can_listen(host, port)
    if why:
        raise UserError(f"cannot listen on {host}:{port}: {why}")
    _db()
    import uvicorn

    from worker.web.webapp import create_app

    shown = f"[{host}]" if ":" in host else host
    mode = "changes need the token" if settings.web_token else "read-only: no token set"
    sys.stderr.write(f"claimwire: web view at http://{shown}:{port}/ ({mode})\n")
    sys.stderr.flush()
    config = uvicorn.Config(
        create_app(settings, bind_host=host),
        host=host,
        port=port,
        log_config=None,
        log_level="debug" if settings.log_level.upper() == "DEBUG" else "warning",
        access_log=settings.log_level.upper() == "DEBUG",
        server_header=False,
        proxy_headers=False,
    )
    uvicorn.Server(config).run()
