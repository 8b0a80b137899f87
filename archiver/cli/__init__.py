"""The command line: main, the commands, the parser and its flags, and the commands that only
read (list, status) or show (demo)."""
