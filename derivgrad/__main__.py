import sys

try:
    from .cli import main
except KeyboardInterrupt:  # Ctrl-C while Python is still importing: no traceback
    from .training.interrupt import forget_handled_interrupt

    forget_handled_interrupt()
    sys.exit(130)

sys.exit(main())
