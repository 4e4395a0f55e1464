"""`python -m bot` runs the `huixiangdou-bot` command line."""

from bot.cli import main

main()
