"""Exact reference values computed by the suite: the free scalar field, 2D U(1) and 2D SU(N) gauge theory."""
