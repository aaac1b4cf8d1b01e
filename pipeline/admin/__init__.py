"""``pipeline admin``: the operator's client for a running pipeline's control plane."""
