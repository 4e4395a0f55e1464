"""`python -m bot` runs the `huixiangdou-bot` command line."""

from bot.app.cli import main

main()
