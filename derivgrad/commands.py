"""Subcommands other than ``bench``; each registers itself with :func:`cli.subcommand`."""
