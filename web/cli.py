"""`manage.py run | serve`: serve the app (Flask's development server, or waitress for production), and the app
factory manage.py's command group uses for the commands that run inside an app context."""

from __future__ import annotations

import os

import click

from indexer.cli_support import with_settings
from indexer.settings import Settings, load_settings


def create_app_for_cli():
    """The app for manage.py's FlaskGroup, from --config or LOOKALIKE_CONFIG."""
    from web import create_app

    ctx = click.get_current_context(silent=True)
    path = (ctx.params.get("config_path") if ctx else None) or "config.toml"
    return create_app(load_settings(os.environ.get("LOOKALIKE_CONFIG", path)))


@click.command("run")
@click.option("--host", default=None, help="Default: web.host from the config.")
@click.option("--port", default=None, type=int, help="Default: web.port from the config.")
@click.option("--debug", is_flag=True)
@with_settings
def run_cmd(settings: Settings, host: str | None, port: int | None, debug: bool) -> None:
    """Serve the app with Flask's development server (make run uses waitress instead)."""
    from web import create_app

    app = create_app(settings)
    # manage.py is a Flask CLI group, which sets FLASK_RUN_FROM_CLI; Flask then ignores app.run() ("would block the
    # current 'flask' CLI command") and the command exited without serving. This command exists to serve.
    os.environ.pop("FLASK_RUN_FROM_CLI", None)
    app.run(host=host or settings.web.host, port=port or settings.web.port, debug=debug, use_reloader=False)


@click.command("serve")
@click.option("--host", default=None)
@click.option("--port", default=None, type=int)
@click.option("--threads", default=8, show_default=True, type=int)
@with_settings
def serve_cmd(settings: Settings, host: str | None, port: int | None, threads: int) -> None:
    """Serve the app with the production WSGI server (waitress); model and index load before the first request."""
    from web.server import serve

    serve(settings, host, port, threads)
