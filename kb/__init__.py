"""kb-bot's composition root: settings, wiring and the `kb` command line."""
