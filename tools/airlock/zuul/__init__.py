"""The Zuul side: configuration generated from the release data (cli -> zuul -> data)."""
