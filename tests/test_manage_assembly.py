"""manage.py assembles the domains' command groups without changing them: a command imported from its domain's
cli.py still runs on its own after manage.py was imported, and every group is reachable through manage.cli."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner


def test_domain_commands_run_on_their_own_after_manage_is_imported(config_path: Path) -> None:
    import manage
    from indexer.pipeline.cli import check_cmd

    assert manage.cli.commands["check"] is not check_cmd
    result = CliRunner().invoke(check_cmd, ["--config", str(config_path), "--json"])
    assert "Could not locate a Flask application" not in result.output
    assert result.exit_code in (0, 1) and result.output.lstrip().startswith("{"), result.output


def test_every_group_is_reachable(config_path: Path) -> None:
    import manage

    ctx = manage.cli.make_context("manage.py", ["--help"], resilient_parsing=True)
    names = set(manage.cli.list_commands(ctx))
    assert {"db", "index", "search", "train", "evaluate", "run", "serve", "fetch-data", "sweep"} <= names
    assert "outfits" in manage.cli.commands["evaluate"].commands
    from indexer.evaluation.cli import evaluate

    assert "outfits" not in evaluate.commands  # the domain's group is left as it is
