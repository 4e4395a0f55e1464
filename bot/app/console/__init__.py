"""The admin console: why the bot answered or stayed silent, teaching its gate, every group's
outcomes and the bot's health, served on the bot's HTTP app (``bot.app.server``)."""
