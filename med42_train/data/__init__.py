"""Dataset assembly: recipe -> format adapters -> chat messages -> tokens with assistant masks -> Arrow."""
