"""``python -m remote_cache`` runs the ``remote-cache`` command."""

try:  # first: a Ctrl-C while the command loads is an interruption too, not a traceback
    from remote_cache.cli import run_program

    status = run_program()
except KeyboardInterrupt:
    import signal
    import sys

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    command = sys.argv[1] if sys.argv[1:2] in (["check"], ["inspect"]) else ""  # COMMANDS
    print(f"remote-cache{' ' if command else ''}{command}: interrupted", file=sys.stderr)
    status = 130
raise SystemExit(status)
