"""The offline bundle: what the Mirror Factory gathers and the site verifies and imports."""
