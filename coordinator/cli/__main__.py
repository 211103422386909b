"""``python -m coordinator.cli``: the same as the ``coordinator`` console script."""

from coordinator.cli import main

if __name__ == "__main__":
    main()
