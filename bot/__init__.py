"""huixiangdou-bot: the core (config, pipeline, inbox/queue/outbox, storage, models, CLI)."""
