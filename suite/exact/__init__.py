"""Exact reference values computed by the suite (free field; later 2D U(1))."""
