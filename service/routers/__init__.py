"""HTTP routers: parse input, call one use case, shape the output."""
