"""`python -m digest.cli` runs the same CLI as the `digest` console script."""

from digest.cli import run

if __name__ == "__main__":
    run()
