"""The documentation site (mkdocs.yml) and the generator of its reference pages (docs.gen)."""
