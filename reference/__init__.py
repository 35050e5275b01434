"""Reference samplers that users compare against: HMC (`reference.hmc`), flows (`reference.flows`)."""
