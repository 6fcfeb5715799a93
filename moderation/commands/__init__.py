"""One module per `moderation` subcommand."""
