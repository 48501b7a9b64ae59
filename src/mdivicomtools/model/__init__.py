"""The shared vocabulary: what a plugin declares, what a run is asked and what it made.

Plain msgspec Structs and their validation, no behaviour that reaches outside
the process. Every other package may import `model`; `model` imports only
`common` and `errors`, so it can never take part in an import cycle.
"""
