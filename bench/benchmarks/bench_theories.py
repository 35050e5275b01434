"""Action and analytic force of φ⁴ and U(1), against L (batch BATCH, float64)."""

from .common import configurations, theory


class ActionForce:
    params = (["phi4", "u1"], [16, 64, 256])
    param_names = ["theory", "L"]

    def setup(self, name, L):
        self.theory = theory(name, L)
        self.x = configurations(self.theory)

    def time_action_force(self, name, L):
        self.theory.action(self.x)
        self.theory.force(self.x)

    def peakmem_action_force(self, name, L):
        self.time_action_force(name, L)
