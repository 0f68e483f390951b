"""Human-readable renderings (rich tables) of autotransfer's typed results."""
