"""The `lab` command: main.py (signals, exit codes), options.py (the parser, every option
declared once), commands.py (one function per command)."""
