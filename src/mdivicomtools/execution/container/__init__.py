"""Container plugins on any engine: the plan, the engine protocol, the runtime.

`plan` (mounts, argv, env and user a container gets), `engine` (the
ContainerEngine protocol an engine adapter implements, EngineError),
`runtime` (ContainerBackend: checks, start, logs, timeouts, Ctrl-C, leftovers),
`client` (the shared docker-py/podman-py adapter code). Neither docker-py nor
podman-py is imported here: they live in the mdivicomtools-docker and
mdivicomtools-podman distributions, which import these modules.
"""
