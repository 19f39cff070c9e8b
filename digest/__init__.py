"""digest: seed files in, a numbered issue out as email, feeds and a web archive."""

__version__ = "0.1.0"
