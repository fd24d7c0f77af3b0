"""The read path: what a usage question asks, how the API declares and checks its parameters."""
