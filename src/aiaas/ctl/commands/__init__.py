"""One module per command group of ``aiaasctl``."""
