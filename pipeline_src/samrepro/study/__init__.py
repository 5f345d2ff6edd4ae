"""samrepro.study: the study config -> run configs, rho selection."""
