"""The offline bundle: create, check, sign, verify, inspect (see BUNDLE-CONTRACT)."""
