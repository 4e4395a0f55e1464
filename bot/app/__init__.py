"""The composition root: the one place that knows every part. It reads bot.yaml, builds the
services (model, knowledge base, rejection gate), the adapters and the bot, schedules the jobs,
serves the HTTP app and runs the command line. Nothing else imports it."""
