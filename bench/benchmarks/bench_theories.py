"""Action and analytic force of φ⁴ and U(1) against L, and of SU(N) (also the autograd force) against N and d
(batch BATCH, float64; SU(N) links complex128)."""

from .common import configurations, sun_theory, theory


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


class SUNActionForce:
    """SU(2), SU(3) on 16² and 4⁴ (Haar links): action with the staple force, and with the autograd force
    (the field space's projection of the gradient) for comparison."""

    params = ([2, 3], [2, 4])
    param_names = ["N", "d"]

    def setup(self, n, d):
        self.theory = sun_theory(n, d)
        self.x = configurations(self.theory)

    def time_action_force(self, n, d):
        self.theory.action(self.x)
        self.theory.force(self.x)

    def time_action_autograd_force(self, n, d):
        self.theory.action(self.x)
        self.theory.autograd_force(self.x)

    def peakmem_action_force(self, n, d):
        self.time_action_force(n, d)
