"""Detector plugins. Built-ins and third-party plugins are found the same way: entry-point group
`moderation.plugins` (see registry.py)."""
