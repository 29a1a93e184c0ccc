"""Cases: the user's model turned into named parameters, a loss and an analytic gradient."""
