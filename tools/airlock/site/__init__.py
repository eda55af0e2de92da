"""The air-gapped site: its stores (site.yaml), the import of a bundle into them."""
