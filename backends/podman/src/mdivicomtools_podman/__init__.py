"""mdivicomtools-podman: run container plugins on Podman through podman-py."""
