"""`python -m digest.cli` runs the same CLI as the `digest` console script."""

from digest.cli import main

if __name__ == "__main__":
    main()
