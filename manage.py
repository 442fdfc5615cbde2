#!/usr/bin/env python3
"""Lookalike command line. This file only assembles the command groups; each domain's commands live beside its code
(indexer/*/cli.py, web/cli.py) and what they share in indexer/cli_support.py.

Every command takes --config PATH (default ./config.toml, or env LOOKALIKE_CONFIG).
Errors are printed as one line starting with "error:" and exit with status 2 (1 for a failed check).
"""

from __future__ import annotations

import copy
import importlib
import logging

import click
from flask.cli import FlaskGroup, with_appcontext

from indexer.backup.cli import backup_cmd, restore_cmd
from indexer.catalog.cli import fetch_data_cmd
from indexer.curation.cli import audit, duplicates_cmd
from indexer.datasets.cli import make_pairs, make_splits_cmd
from indexer.evaluation.cli import evaluate, sweep_cmd
from indexer.outfits.cli import evaluate_outfits_cmd, make_outfits_cmd, outfit_cmd, train_outfits_cmd
from indexer.pipeline.cli import check_cmd, index_cmd, remove_cmd
from indexer.search.cli import search_cmd
from indexer.store.cli import db
from indexer.training.cli import (
    train_classifier_cmd,
    train_cmd,
    train_colour_head_cmd,
    train_detector_cmd,
    train_street_encoder_cmd,
    train_text_cmd,
)

# web/ is imported only by the commands that serve, so the training commands run where it is not installed.
WEB_COMMANDS = {"run": "run_cmd", "serve": "serve_cmd"}


class LookalikeGroup(FlaskGroup):
    """Flask's CLI group, with the serving commands (web/cli.py) loaded when they are asked for."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(WEB_COMMANDS))

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        if name in WEB_COMMANDS and name not in self.commands:
            self.add_command(_in_app_context(getattr(importlib.import_module("web.cli"), WEB_COMMANDS[name])))
        return super().get_command(ctx, name)


def _create_app():
    return importlib.import_module("web.cli").create_app_for_cli()


cli = LookalikeGroup(create_app=_create_app, add_default_commands=False,
                     help="Lookalike: visual similarity search for fashion catalogs.")


def _in_app_context(command: click.Command) -> click.Command:
    """A copy of the command (of every command of a group) that runs inside the Flask app context, as Flask's own
    groups do. A copy: the domain's command objects stay as they are for anyone who invokes them directly."""
    wrapped = copy.copy(command)
    if isinstance(command, click.Group):
        wrapped.commands = {name: _in_app_context(sub) for name, sub in command.commands.items()}
    else:
        wrapped.callback = with_appcontext(command.callback)
    return wrapped


for _command in (db, index_cmd, remove_cmd, check_cmd, search_cmd, make_pairs, make_splits_cmd, evaluate, outfit_cmd,
                 make_outfits_cmd, train_outfits_cmd, sweep_cmd, duplicates_cmd, audit, backup_cmd, restore_cmd):
    cli.add_command(_in_app_context(_command))
cli.commands["evaluate"].add_command(_in_app_context(evaluate_outfits_cmd))
# The training commands need no web app (nor faiss): they run on bare GPU boxes; nor does fetch-data.
for _command in (train_cmd, train_classifier_cmd, train_text_cmd, train_colour_head_cmd, train_detector_cmd,
                 train_street_encoder_cmd, fetch_data_cmd):
    cli.add_command(_command)


def main() -> None:
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    for name in ("indexer", "engine", "web"):
        logging.getLogger(name).setLevel(logging.INFO)
    cli.main(prog_name="manage.py")


if __name__ == "__main__":
    main()
