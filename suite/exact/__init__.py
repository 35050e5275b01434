"""Exact reference values computed by the suite: the free scalar field and 2D U(1) gauge theory."""
