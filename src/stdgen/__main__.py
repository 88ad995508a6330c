import sys

try:
    from stdgen.cli import main
except KeyboardInterrupt:  # Ctrl-C during start-up: the same exit as later on
    sys.stderr.write("stdgen: interrupted\n")
    raise SystemExit(130) from None

raise SystemExit(main())
