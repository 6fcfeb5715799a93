"""The `moderation` subcommands that run the pipeline's processes: `consume`, `worker`, `relay`, `lag`.

They live beside the processes they start, and reach the `moderation` command through the entry-point group
`moderation.commands` (pyproject.toml), so the library never imports this package.
"""
