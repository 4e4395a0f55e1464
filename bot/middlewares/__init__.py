"""Built-in middlewares, named by short name in bot.yaml (see bot.pipeline.BUILTIN_MIDDLEWARES)."""
